"""`mlplat ui` speed (issue 18's goals), measured as a user meets it, in Debian's Chromium driven by Playwright:

1. start-up: the real `mlplat ui -f STACK --port 0 --no-browser` process spawned -> its URL printed -> the
   printed URL's page loaded in Chromium (without a browser: answered over HTTP) (goal: the UI's own start-up
   ≤ 1 s);
2. the Platform page of a stack of N raw `sim.data` resources (applied first), loaded in Chromium: Navigation
   Timing's `loadEventEnd - startTime` (the server's rendering included), and the chips counted (goal: N = 1,000
   in ≤ 1 s).

Medians of --runs runs. Without playwright or a Chromium binary (`chromium` on PATH or $MLPLAT_CHROMIUM) it says
so and measures what needs no browser.

    python bench/ui_speed.py [--n 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
MLPLAT = str(Path(sys.executable).with_name("mlplat"))
URL_LINE = re.compile(r"(http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_\-]+))")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
LOAD_MS = """() => { const n = performance.getEntriesByType("navigation")[0]; return n.loadEventEnd - n.startTime; }"""


def stack_text(n: int) -> str:
    lines = ["apiVersion: mlplat/v1", "metadata:", "  name: ui-bench", "target: sim", "targets:", "  sim:",
             "    store: ':memory:'", "resources:"]
    for i in range(n):
        lines += [f"  - name: r{i}", "    kind: sim.data", f"    inputs: {{input: r{i}}}"]
    return "\n".join(lines) + "\n"


def chromium() -> str | None:
    given = os.environ.get("MLPLAT_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def start_ui(stack: Path) -> tuple[subprocess.Popen[str], float, float, str, str]:
    """(process, spawned at, URL printed at, base URL, token): perf_counter times."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(NO_COLOR="1", PYTHONUNBUFFERED="1")
    began = time.perf_counter()
    proc = subprocess.Popen([MLPLAT, "ui", "-f", str(stack), "--port", "0", "--no-browser"], cwd=stack.parent,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    deadline = began + 30
    while time.perf_counter() < deadline:
        try:
            found = URL_LINE.search(lines.get(timeout=0.5))
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if found:
            return proc, began, time.perf_counter(), f"http://127.0.0.1:{found.group(2)}", found.group(3)
    stop(proc)
    raise RuntimeError("`mlplat ui` printed no URL within 30 s")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def first_answer(base: str, token: str) -> float:
    req = urllib.request.Request(f"{base}/platform", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
        assert resp.status == 200
    return time.perf_counter()


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (runs: {', '.join(f'{v * 1000:.0f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="resources in the big stack (default 1000)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is None and chromium() is None:
        missing = "no Chromium binary (apt-get install chromium, or set $MLPLAT_CHROMIUM)"
    if missing:
        print(f"ui_speed: {missing}: the in-browser timings are not measured")

    with tempfile.TemporaryDirectory(prefix="mlplat-ui-bench-") as tmp:
        stacks: dict[int, Path] = {}
        for n in (10, args.n):
            stacks[n] = Path(tmp) / f"n{n}" / "stack.yaml"  # a directory each: its own state
            stacks[n].parent.mkdir()
            stacks[n].write_text(stack_text(n))
            subprocess.run([MLPLAT, "apply", "-f", str(stacks[n]), "--yes"], cwd=stacks[n].parent, check=True,
                           capture_output=True, stdin=subprocess.DEVNULL)
        with (sync_playwright() if not missing else _Nothing()) as playwright:
            browser = None
            if playwright is not None:
                browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS, headless=True)
            for n, stack in stacks.items():
                printed, answered, shown, first_nav, loads, chips = [], [], [], [], [], 0
                for _ in range(args.runs):
                    proc, began, at_url, base, token = start_ui(stack)
                    try:
                        printed.append(at_url - began)
                        if browser is None:
                            answered.append(first_answer(base, token) - began)
                            continue
                        # the printed URL opened in Chromium, as `mlplat ui` opens it when a terminal is attached
                        context = browser.new_context(viewport={"width": 1280, "height": 860})
                        page = context.new_page()
                        page.goto(f"{base}/?token={token}", wait_until="load")
                        shown.append(time.perf_counter() - began)
                        first_nav.append(page.evaluate(LOAD_MS) / 1000)
                        for _ in range(2):  # later loads: the cookie carries the token
                            page.goto(f"{base}/platform", wait_until="load")
                        loads.append(page.evaluate(LOAD_MS) / 1000)
                        chips = page.locator("a.res[data-address]").count()
                        context.close()
                    finally:
                        stop(proc)
                print(f"{n}-resource stack (medians of {args.runs}):")
                print(f"  start-up: process spawned -> URL printed: {median_ms(printed)}")
                if answered:
                    print(f"  start-up: process spawned -> first page answered (HTTP): {median_ms(answered)}")
                if shown:
                    print(f"  start-up: process spawned -> first page loaded in Chromium: {median_ms(shown)}")
                    print(f"  first page load, Navigation Timing (redirects, server's first render, assets): "
                          f"{median_ms(first_nav)}")
                    print(f"  Platform page load (warm server), Navigation Timing: {median_ms(loads)}; {chips} "
                          "resource chips")
            if browser is not None:
                browser.close()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
