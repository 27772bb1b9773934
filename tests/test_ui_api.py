"""`mlplat ui`'s HTTP API and guards, through the real server on 127.0.0.1: the access token on every request,
the Host check, CSRF and Origin on every POST; the Platform page's statuses and resource page; preview, apply
under the stack's lock with server-sent progress; secrets masked; several stacks; the CLI stays lean."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.api import Stack
from provisioner.ui.app import UiApp
from provisioner.ui.server import make_server
from provisioner.ui.stackfiles import stack_files

from conftest import REPO

SIM_STACK = """\
apiVersion: mlplat/v1
metadata:
  name: demo
target: sim
targets:
  sim:
    store: cloud
clusters:
  - name: train
    gpu_pools:
      - {name: gpu, accelerator: h100, gpus_per_node: 8, nodes: {min: 1, max: 2}}
storage:
  - {name: shared, size_gb: 10}
registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: iris.json}
serving:
  - name: iris
    paths:
      production: {model: "iris:1", weight: 100}
"""


class Ui:
    """A UI server in this process for the stack files `paths`, and requests to it."""

    def __init__(self, paths: list[Path]) -> None:
        self.app = UiApp(paths)
        self.server = make_server(self.app, 0)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.close()

    def request(self, path: str, body: Any = None, *, token: str | None = "header", csrf: str | None = "right",
                headers: dict[str, str] | None = None, method: str | None = None) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        if token == "header":
            sent["Authorization"] = f"Bearer {self.app.token}"
        elif token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
            if csrf == "right":
                sent["X-CSRF-Token"] = self.app.csrf
            elif csrf is not None:
                sent["X-CSRF-Token"] = csrf
        request = urllib.request.Request(self.base + path, data=data, headers=sent, method=method)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def json(self, path: str, body: Any = None, **options: Any) -> Any:
        status, _, data = self.request(path, body, **options)
        assert status in (200, 202), (status, data)
        return json.loads(data)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture
def sim_stack(tmp_path: Path) -> Path:
    (tmp_path / "iris.json").write_text("{}")
    path = tmp_path / "demo.yaml"
    path.write_text(SIM_STACK)
    return path


@pytest.fixture
def ui(sim_stack: Path) -> Iterator[Ui]:
    server = Ui([sim_stack])
    yield server
    server.close()


def cloud_object(stack: Path, address: str) -> Path:
    with Stack(stack) as opened:
        record = opened.state.resources()[address]
    return stack.parent / "cloud" / "objects" / f"{record.id}.json"


# -- guards ------------------------------------------------------------------------------------------------------
def test_every_request_without_the_right_token_is_refused(ui: Ui) -> None:
    for path in ("/platform", "/api/platform", "/static/ui.js", "/api/stacks", "/resource?address=x", "/"):
        for token in (None, "wrong-token"):
            status, _, body = ui.request(path, token=token)
            assert status == 401, (path, token, status)
            if path.startswith("/api/"):
                assert "access token" in json.loads(body)["error"]
            else:
                assert b'id="refused"' in body and b"csrf-token" not in body
    status, _, body = ui.request("/api/preview", {}, token=None)
    assert status == 401


def test_the_token_in_the_url_becomes_a_cookie_and_leaves_the_address_bar(ui: Ui) -> None:
    status, headers, _ = ui.request(f"/plan?stack=demo&token={ui.app.token}", token=None)
    assert status == 303
    assert headers["Location"] == "/plan?stack=demo"
    cookie = headers["Set-Cookie"]
    assert f"mlplat_ui={ui.app.token}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, headers, body = ui.request("/platform?stack=demo", token=None,
                                       headers={"Cookie": f"mlplat_ui={ui.app.token}"})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert f'content="{ui.app.csrf}"'.encode() in body  # the page carries the CSRF token for its POSTs
    status, _, _ = ui.request("/api/stacks", token=None, headers={"Cookie": "mlplat_ui=forged"})
    assert status == 401
    status, _, body = ui.request(f"/api/stacks?token={ui.app.token}", token=None)  # the API takes it as is
    assert status == 200 and json.loads(body)["stacks"][0]["key"] == "demo"


def test_a_foreign_host_header_is_refused(ui: Ui) -> None:
    """DNS rebinding: a page of another site resolving its name to 127.0.0.1 sends its own Host."""
    connection = http.client.HTTPConnection("127.0.0.1", ui.server.port, timeout=10)
    connection.request("GET", f"/api/stacks?token={ui.app.token}", headers={"Host": f"evil.example:{ui.server.port}"})
    response = connection.getresponse()
    assert response.status == 403 and "answers only" in json.loads(response.read())["error"]
    connection.close()
    status, _, _ = ui.request("/api/stacks", headers={"Host": f"localhost:{ui.server.port}"})
    assert status == 200


def test_posts_need_the_csrf_token_and_this_origin(ui: Ui) -> None:
    for csrf in (None, "wrong"):
        status, _, body = ui.request("/api/preview?stack=demo", {}, csrf=csrf)
        assert status == 403 and "CSRF" in json.loads(body)["error"]
    status, _, body = ui.request("/api/preview?stack=demo", {}, headers={"Origin": "https://evil.example"})
    assert status == 403 and "cross-site" in json.loads(body)["error"]
    status, _, body = ui.request("/api/preview?stack=demo", {}, headers={"Origin": ui.base})
    assert status == 200 and json.loads(body)["summary"]["create"] > 0


def test_unknown_pages_endpoints_and_stacks_are_clear_errors(ui: Ui) -> None:
    status, _, body = ui.request("/api/nope?stack=demo")
    assert status == 404 and "no such endpoint" in json.loads(body)["error"]
    status, _, body = ui.request("/nope?stack=demo")
    assert status == 404 and b"no page" in body
    status, _, body = ui.request("/api/platform?stack=other")
    assert status == 400 and "no stack 'other' here (stacks: demo)" in json.loads(body)["error"]
    status, _, body = ui.request("/static/../server.py")
    assert status == 404
    status, _, body = ui.request("/api/runs/abc")
    assert status == 404
    status, _, body = ui.request("/api/apply?stack=demo", {"preview": "x"})
    assert status == 400 and "confirm" in json.loads(body)["error"]
    status, _, body = ui.request("/api/apply?stack=demo", {"preview": "x", "confirm": "yes"})
    assert status == 409 and "not the latest" in json.loads(body)["error"]


def test_a_mistake_in_the_stack_file_is_shown_located_without_a_traceback(ui: Ui, sim_stack: Path) -> None:
    sim_stack.write_text(SIM_STACK.replace("size_gb: 10", "size_gb: ten"))
    status, _, body = ui.request("/api/plan?stack=demo")
    error = json.loads(body)["error"]
    assert status == 400 and f"{sim_stack}:13:29: storage[0].size_gb" in error and "Traceback" not in error
    for page in ("plan", "platform"):
        status, _, body = ui.request(f"/{page}?stack=demo")
        assert status == 400 and b'id="error"' in body and b"storage[0].size_gb" in body and b"Traceback" not in body


# -- Platform ----------------------------------------------------------------------------------------------------
def statuses(ui: Ui) -> dict[str, str]:
    return {r["address"]: r["status"] for r in ui.json("/api/platform?stack=demo")["resources"]}


def test_platform_statuses_follow_the_plan_and_the_objects(ui: Ui, sim_stack: Path) -> None:
    before = statuses(ui)
    assert before and set(before.values()) == {"pending"}  # nothing made yet
    with Stack(sim_stack) as stack:
        stack.up()
    data = ui.json("/api/platform?stack=demo")
    assert data["total"] == len(before) and data["counts"]["in-sync"] == len(before)
    assert {c["name"] for c in data["components"]} == {"train", "shared", "models", "iris"}
    iris = next(c for c in data["components"] if c["name"] == "iris")
    assert "models" in iris["depends_on"] and iris["targets"] == ["sim"]

    sim_stack.write_text(SIM_STACK.replace("size_gb: 10", "size_gb: 30"))
    assert statuses(ui)["shared.filesystem.main"] == "pending"
    sim_stack.write_text(SIM_STACK)

    pool = cloud_object(sim_stack, "train.pool.gpu")
    seen = json.loads(pool.read_text())
    seen["inputs"]["max"] = 5  # changed outside mlplat
    pool.write_text(json.dumps(seen))
    filesystem = cloud_object(sim_stack, "shared.filesystem.main")
    filesystem.unlink()  # deleted outside mlplat
    now = statuses(ui)
    assert now["train.pool.gpu"] == "drift" and now["shared.filesystem.main"] == "failed"
    assert {s for a, s in now.items() if a not in ("train.pool.gpu", "shared.filesystem.main")} == {"in-sync"}

    status, _, body = ui.request("/platform?stack=demo")
    page = body.decode()
    assert status == 200 and page.count('class="res ') == len(now)
    assert 'data-address="shared.filesystem.main" data-status="failed"' in page
    assert 'data-component="shared" data-status="failed"' in page and 'id="component-graph"' in page
    assert ui.json("/api/platform?stack=demo&refresh=0")["refreshed"] is False


def test_the_resource_page_shows_inputs_outputs_and_its_journal(ui: Ui, sim_stack: Path) -> None:
    with Stack(sim_stack) as stack:
        stack.up()
    data = ui.json("/api/resource?stack=demo&address=shared.filesystem.main")
    assert data["status"] == "in-sync" and data["inputs"]["size_gb"] == 10 and data["kind"].startswith("sim.")
    assert [e["op"] for e in data["history"]] == ["create"] and data["history"][0]["phase"] == "done"
    status, _, body = ui.request("/resource?stack=demo&address=shared.filesystem.main")
    assert status == 200 and b'id="address"' in body and b'id="inputs"' in body and b'id="history"' in body
    status, _, body = ui.request("/api/resource?stack=demo&address=shared.filesystem.mian")
    assert status == 400 and "did you mean shared.filesystem.main" in json.loads(body)["error"]


def test_the_platform_page_while_another_process_applies(ui: Ui, sim_stack: Path) -> None:
    with Stack(sim_stack) as stack:
        stack.up()
    holder = Stack(sim_stack)
    try:
        with holder.locked("apply"):  # a CLI apply elsewhere, one step in flight
            record = holder.state.resources()["shared.filesystem.main"]
            holder.state.journal_pending("elsewhere", "update", record)
            data = ui.json("/api/platform?stack=demo")
            assert data["locked"] is True and "lock" in data["problem"]
            assert {r["status"] for r in data["resources"]} == {"unknown"} and data["total"] == 8
            status, _, body = ui.request("/platform?stack=demo")
            assert status == 200 and b'data-refresh="3"' in body and b'id="problem"' in body
    finally:
        holder.close()
    data = ui.json("/api/platform?stack=demo")  # the lock is free: the plan recovers the step, all in sync
    assert data["locked"] is False and set(statuses(ui).values()) == {"in-sync"}


# -- Plan and apply ----------------------------------------------------------------------------------------------
def events_of(ui: Ui, run_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The run's server-sent events (the stream ends with the run)."""
    status, headers, body = ui.request(f"/api/runs/{run_id}/events")
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    steps, end = [], None
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if fields.get("event") == "step":
            steps.append(json.loads(fields["data"]))
        elif fields.get("event") == "end":
            end = json.loads(fields["data"])
    assert end is not None, body
    return steps, end


def test_preview_then_apply_streams_progress_and_lands_in_the_state(ui: Ui, sim_stack: Path) -> None:
    plan = ui.json("/api/plan?stack=demo")  # the first visit previews
    assert plan["summary"]["create"] == len(plan["changes"]) and plan["steps"] == len(plan["changes"])
    assert "mlplat will change stack demo" in plan["text"] and plan["cost"]["after"]["components"]
    preview = ui.json("/api/preview?stack=demo", {})
    assert preview["preview"] != plan["preview"]
    status, _, body = ui.request("/api/apply?stack=demo", {"preview": plan["preview"], "confirm": "yes"})
    assert status == 409  # only the latest preview is applied
    started = ui.json("/api/apply?stack=demo", {"preview": preview["preview"], "confirm": "yes"})
    steps, end = events_of(ui, started["run"]["id"])
    assert end["ok"] is True and end["summary"]["applied"] == len(preview["changes"])
    done = {e["address"] for e in steps if e["type"] == "step-done"}
    assert done == {c["address"] for c in preview["changes"]}
    assert ui.json(f"/api/runs/{started['run']['id']}")["ok"] is True
    with Stack(sim_stack) as stack:
        assert len(stack.state.resources()) == len(done)
    after = ui.json("/api/plan?stack=demo")  # applied: previewed afresh
    assert after["has_changes"] is False and after["stale"] is False

    sim_stack.write_text(SIM_STACK.replace("size_gb: 10", "size_gb: 30"))
    changed = ui.json("/api/preview?stack=demo", {})
    (change,) = changed["changes"]
    assert change["address"] == "shared.filesystem.main" and change["action"] == "update"
    assert change["fields"] == [{"field": "size_gb", "before": 10, "after": 30}]
    assert set(changed["cost"]["delta"]["components"]) == {"train", "shared", "models", "iris"}
    status, _, body = ui.request("/plan?stack=demo")
    assert b'data-address="shared.filesystem.main" data-action="update"' in body
    assert b'data-field="size_gb"' in body and b'id="confirm-apply"' in body


def test_apply_takes_the_stack_lock_and_refuses_a_stale_preview(ui: Ui, sim_stack: Path) -> None:
    preview = ui.json("/api/preview?stack=demo", {})
    holder = Stack(sim_stack)
    try:
        with holder.locked("apply"):  # as a CLI apply elsewhere would
            started = ui.json("/api/apply?stack=demo", {"preview": preview["preview"], "confirm": "yes"})
            _, end = events_of(ui, started["run"]["id"])
        assert end["ok"] is False and "lock" in end["error"]
        holder.up()  # the state moves on: the preview is stale
    finally:
        holder.close()
    page = ui.json("/api/plan?stack=demo")
    assert page["stale"] is True and page["preview"] == preview["preview"]
    started = ui.json("/api/apply?stack=demo", {"preview": preview["preview"], "confirm": "yes"})
    _, end = events_of(ui, started["run"]["id"])
    assert end["ok"] is False and "stale" in end["error"]


# -- secrets, several stacks, start-up -----------------------------------------------------------------------------
KEY = "k3y-Zq8w9ErT5yUi0pL2"


def test_secrets_are_masked_on_every_page(quickstart_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLAT_STATE_PASSPHRASE", "a passphrase for the tests")
    monkeypatch.setenv("IRIS_API_KEY", KEY)
    stack_path = quickstart_dir / "quickstart.yaml"
    stack_path.write_text(stack_path.read_text().replace(
        "  - name: iris\n    paths:", "  - name: iris\n    auth: key\n    api_key: ${secret:IRIS_API_KEY}\n    paths:"))
    ui = Ui([stack_path])
    try:
        plan = ui.json("/api/plan?stack=quickstart")
        assert "(sensitive)" in json.dumps(plan)
        started = ui.json("/api/apply?stack=quickstart", {"preview": plan["preview"], "confirm": "yes"})
        _, end = events_of(ui, started["run"]["id"])
        assert end["ok"] is True, end
        router = ui.json("/api/resource?stack=quickstart&address=iris.router.main")
        assert router["inputs"]["api_key"] == "(sensitive)"
        bodies = [ui.request(path)[2] for path in (
            "/api/platform?stack=quickstart", "/platform?stack=quickstart", "/plan?stack=quickstart",
            "/api/plan?stack=quickstart", "/resource?stack=quickstart&address=iris.router.main",
            f"/api/runs/{started['run']['id']}/events")]
        assert all(KEY.encode() not in body for body in bodies)
    finally:
        ui.close()
        with Stack(stack_path) as stack:
            stack.destroy()


def test_several_stacks_and_a_directory_of_them(tmp_path: Path) -> None:
    (tmp_path / "iris.json").write_text("{}")
    (tmp_path / "a.yaml").write_text(SIM_STACK)
    (tmp_path / "b.yaml").write_text(SIM_STACK.replace("name: demo", "name: other"))
    (tmp_path / "a.prod.yaml").write_text("variables: {}\n")  # an environment's values: not a stack
    (tmp_path / "module.yaml").write_text("storage:\n  - {name: more, size_gb: 1}\n")  # an included module
    assert stack_files([tmp_path]) == [tmp_path / "a.yaml", tmp_path / "b.yaml"]
    other = tmp_path / "sub"
    other.mkdir()
    (other / "a.yaml").write_text(SIM_STACK.replace("name: demo", "name: third"))
    ui = Ui([*stack_files([tmp_path]), other / "a.yaml"])
    try:
        assert [s["key"] for s in ui.json("/api/stacks")["stacks"]] == ["a", "b", "a-2"]
        assert ui.json("/api/platform?stack=a-2")["stack"] == "third"
        _, _, body = ui.request("/platform?stack=b")
        assert b'<option value="a-2">' in body
    finally:
        ui.close()


def test_help_and_other_commands_do_not_import_the_ui() -> None:
    quickstart = REPO / "stacks" / "quickstart.yaml"
    for argv in (["mlplat", "--help"], ["mlplat", "validate", "-f", str(quickstart)], ["mlplat", "ui", "--help"]):
        code = (f"import sys\nfrom provisioner.cli import main\nsys.argv = {argv!r}\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "loaded = [m for m in sys.modules if m.startswith('provisioner.ui')]\n"
                "assert not loaded, loaded\n")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert result.returncode == 0, (argv, result.stderr)


def test_cli_errors_are_clear(tmp_path: Path, ui: Ui) -> None:
    from conftest import run_mlplat

    taken = run_mlplat("ui", "-f", str(ui.app.paths["demo"]), "--port", str(ui.server.port),
                       "--no-browser", cwd=tmp_path, check=False, timeout=30)
    assert taken.returncode == 1 and "Traceback" not in taken.stderr
    assert f"cannot listen on 127.0.0.1:{ui.server.port}" in taken.stderr and "--port" in taken.stderr
    missing = run_mlplat("ui", "-f", "nope.yaml", "--no-browser", cwd=tmp_path, check=False, timeout=30)
    assert missing.returncode == 1 and "nope.yaml: no such stack file or directory" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = run_mlplat("ui", "-f", "empty", "--no-browser", cwd=tmp_path, check=False, timeout=30)
    assert empty.returncode == 1 and "no stack file in this directory" in empty.stderr
