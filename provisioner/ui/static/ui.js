// mlplat ui: the little the pages need in the browser. No framework, no build step.
"use strict";
(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const stack = () => document.body.dataset.stack;

  async function post(path, body) {
    const response = await fetch(path + "?stack=" + encodeURIComponent(stack()), {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(() => ({error: "HTTP " + response.status}));
    if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
    return data;
  }

  function say(id, text, css) {
    const box = document.getElementById(id);
    if (!box) return;
    box.textContent = text;
    box.className = css || "";
    box.hidden = !text;
  }

  // the stack chooser
  document.querySelectorAll("select[data-autosubmit]").forEach((select) =>
    select.addEventListener("change", () => select.form.submit()));

  // pages that refresh themselves (serving: observed traffic)
  const refresh = document.querySelector("[data-refresh]");
  if (refresh) {
    const seconds = parseFloat(refresh.dataset.refresh);
    if (seconds > 0) setTimeout(() => location.reload(), seconds * 1000);
  }

  // Plan: run preview
  const previewButton = document.getElementById("run-preview");
  if (previewButton) previewButton.addEventListener("click", async () => {
    previewButton.disabled = true;
    say("plan-message", "previewing… (reading every resource)", "busy");
    try {
      await post("/api/preview");
      location.reload();
    } catch (err) {
      say("plan-message", err.message, "error");
      previewButton.disabled = false;
    }
  });

  // Plan: apply, after a confirmation, with live progress
  const applyButton = document.getElementById("apply");
  const dialog = document.getElementById("confirm-apply");
  if (applyButton && dialog) {
    applyButton.addEventListener("click", () => dialog.showModal());
    document.getElementById("confirm-cancel").addEventListener("click", () => dialog.close());
    document.getElementById("confirm-yes").addEventListener("click", async () => {
      dialog.close();
      applyButton.disabled = true;
      if (previewButton) previewButton.disabled = true;
      say("plan-message", "applying…", "busy");
      try {
        const started = await post("/api/apply", {preview: applyButton.dataset.preview, confirm: "yes"});
        follow(started.run, parseInt(applyButton.dataset.steps || "0", 10));
      } catch (err) {
        say("plan-message", err.message, "error");
        applyButton.disabled = false;
        if (previewButton) previewButton.disabled = false;
      }
    });
  }

  function follow(run, total) {
    const log = document.getElementById("progress");
    const bar = document.getElementById("progress-bar");
    log.hidden = false;
    if (bar) { bar.hidden = false; bar.max = Math.max(total, 1); bar.value = 0; }
    let done = 0;
    const source = new EventSource("/api/runs/" + run.id + "/events");
    source.addEventListener("step", (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "step-done") { done += 1; if (bar) bar.value = done; }
      const line = document.createElement("li");
      line.className = event.type;
      line.dataset.address = event.address;
      const took = event.elapsed ? " (" + event.elapsed.toFixed(2) + " s)" : "";
      line.textContent = [event.type, event.address, event.action, event.message].filter(Boolean).join(" ") + took;
      log.appendChild(line);
      line.scrollIntoView({block: "nearest"});
    });
    source.addEventListener("end", (message) => {
      source.close();
      const status = JSON.parse(message.data);
      if (status.ok) {
        say("plan-message", "Apply complete: " + done + " step(s) in " +
            (status.finished - status.started).toFixed(1) + " s.", "ok");
      } else {
        say("plan-message", "Apply failed: " + status.error, "error");
      }
      document.body.dataset.run = status.ok ? "done" : "failed";
      if (previewButton) previewButton.disabled = false;
    });
  }

  // a run already going when the page loads (applied from another tab): follow it
  const running = document.body.querySelector("[data-running]");
  if (running) follow({id: running.dataset.running}, parseInt(running.dataset.steps || "0", 10));

  // Platform: resource chips show their detail on click (a link for keyboards and no-JS)
  document.querySelectorAll("[data-filter]").forEach((input) => input.addEventListener("input", () => {
    const needle = input.value.toLowerCase();
    document.querySelectorAll(input.dataset.filter).forEach((el) => {
      el.hidden = needle && !el.textContent.toLowerCase().includes(needle);
    });
  }));
})();
