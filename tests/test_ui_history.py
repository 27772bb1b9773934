"""The run record every apply journals (`provisioner.history`) and the UI's History page over it: real applies of
real stacks (sim targets; one local move behind a front door for traffic steps), then GET /api/history and
/history through the real server on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner.api import Stack
from provisioner.errors import MlplatError
from provisioner.history import runs
from provisioner.state.base import host_name, login_name
from provisioner.ui.app import UiApp
from provisioner.ui.server import make_server

from conftest import STACKS
from local_processes import kill_all, servers_under

WHO = f"{login_name()}@{host_name()}"


def sim_doc() -> dict[str, Any]:
    return {"apiVersion": "mlplat/v1", "metadata": {"name": "hist"}, "target": "sim",
            "targets": {"sim": {"type": "sim", "store": "cloud"}, "sim2": {"type": "sim", "store": "cloud2"}},
            "clusters": [{"name": "train", "gpu_pools": [{"name": "gpu", "accelerator": "l4", "gpus_per_node": 1,
                                                          "nodes": {"min": 1, "max": 2}}]}],
            "storage": [{"name": "data", "size_gb": 10}]}


class Ui:
    """The UI's server in this process for one stack file."""

    def __init__(self, path: Path) -> None:
        self.app = UiApp([path])
        self.server = make_server(self.app, 0)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def get(self, path: str) -> tuple[int, str]:
        sep = "&" if "?" in path else "?"
        url = f"http://127.0.0.1:{self.server.port}{path}{sep}token={self.app.token}"
        opener = urllib.request.build_opener()  # a page load with ?token= answers 303 + cookie: follow it
        opener.addheaders = [("Cookie", f"mlplat_ui={self.app.token}")]
        with opener.open(url, timeout=10) as resp:
            return resp.status, resp.read().decode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.app.close()


@pytest.fixture
def ui_for() -> Iterator[Any]:
    made: list[Ui] = []

    def start(path: Path) -> Ui:
        made.append(Ui(path))
        return made[-1]

    yield start
    for ui in made:
        ui.close()


def write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def apply(path: Path, *, destroy: bool = False) -> None:
    with Stack(path) as stack:
        stack.apply(stack.plan(destroy=destroy))


def history(path: Path) -> list[dict[str, Any]]:
    with Stack(path) as stack:
        return runs(stack.state)


def test_applies_and_a_migration_are_recorded_and_shown(tmp_path: Path, ui_for: Any) -> None:
    path = tmp_path / "stack.yaml"
    doc = sim_doc()
    write(path, doc)
    apply(path)
    doc["storage"][0]["size_gb"] = 20  # in place
    doc["clusters"][0]["gpu_pools"][0]["accelerator"] = "h100"  # a replace
    write(path, doc)
    apply(path)
    doc["storage"][0]["target"] = "sim2"  # a move between the two simulated clouds
    write(path, doc)
    apply(path)

    moved, changed, first = history(path)
    assert [r["verb"] for r in (moved, changed, first)] == ["migrate", "apply", "apply"]
    for run in (moved, changed, first):
        assert run["who"] == WHO and run["ok"] is True and run["error"] is None and run["recorded"]
        assert run["started"] <= run["finished"] and run["seconds"] >= 0
        assert run["apply_ids"] and run["entries"] >= 1
    assert first["counts"] == {"create": 3, "update": 0, "replace": 0, "delete": 0}
    assert {c["address"]: (c["action"], c["outcome"]) for c in first["changes"]} == {
        "train.cluster.main": ("create", "done"), "train.pool.gpu": ("create", "done"),
        "data.filesystem.main": ("create", "done")}
    assert {c["address"]: c["action"] for c in changed["changes"]} == {
        "data.filesystem.main": "update", "train.pool.gpu": "replace"}
    assert changed["counts"]["update"] == 1 and changed["counts"]["replace"] == 1
    assert changed["entries"] == 3  # the update, and the replace's delete + create
    assert all(c["outcome"] == "done" and c["seconds"] is not None for c in changed["changes"])
    [migration] = moved["migrations"]
    assert (migration["component"], migration["kind"], migration["source"], migration["destination"]) == (
        "data", "storage", "sim", "sim2")
    assert [p["phase"] for p in migration["phases"]] == ["provision", "transfer", "health-check", "shift",
                                                         "teardown"]
    assert all(p["seconds"] >= 0 for p in migration["phases"])
    assert [s["phase"] for s in migration["steps"]] == ["health-check", "shift", "done"]
    assert migration["steps"][1]["message"] == "nothing to shift (no traffic)"
    assert len(moved["apply_ids"]) >= 2  # the apply segments' own ids

    ui = ui_for(path)
    status, body = ui.get("/api/history?stack=stack")
    data = json.loads(body)
    assert status == 200 and data["total"] == 3
    assert [r["id"] for r in data["runs"]] == [moved["id"], changed["id"], first["id"]]
    assert data["runs"][0]["migrations"][0]["phases"] == migration["phases"]
    status, page = ui.get("/history?stack=stack")
    assert status == 200
    assert page.index(f'data-run-id="{moved["id"]}"') < page.index(f'data-run-id="{changed["id"]}"') \
        < page.index(f'data-run-id="{first["id"]}"')
    assert f'<tr data-run-id="{moved["id"]}" data-verb="migrate" data-ok="true"' in page
    assert f'<tr data-run-id="{first["id"]}" data-verb="apply" data-ok="true"' in page
    assert page.count("<details>") == 3 and WHO in page
    assert '<div class="migration" data-migration="data" data-mode="move">' in page
    assert '<tr data-phase="health-check">' in page and "nothing to shift (no traffic)" in page
    assert 'data-address="train.pool.gpu" data-action="replace" data-outcome="done"' in page

    apply(path, destroy=True)
    destroyed = history(path)[0]
    assert destroyed["verb"] == "destroy" and destroyed["counts"]["delete"] == 3 and destroyed["ok"] is True


def test_a_failed_apply_gets_a_record_and_recovery_ignores_records(tmp_path: Path, ui_for: Any) -> None:
    path = tmp_path / "stack.yaml"
    doc = sim_doc()
    write(path, doc)
    apply(path)
    doc["storage"][0]["size_gb"] = 30
    doc["clusters"][0]["gpu_pools"][0]["nodes"]["max"] = 3
    write(path, doc)
    with Stack(path) as stack:
        record = stack.state.resources()["data.filesystem.main"]
        plan = stack.plan(refresh=False)  # the object goes after the plan was made: its update fails
        (tmp_path / "cloud" / "objects" / f"{record.id}.json").unlink()
        with pytest.raises(MlplatError):
            stack.apply(plan)
        assert not stack.state.pending()  # the run record is closed at once
    failed, _ = history(path)
    assert failed["ok"] is False and failed["verb"] == "apply" and failed["who"] == WHO
    assert "ResourceNotFound" in failed["error"]
    outcomes = {c["address"]: c["outcome"] for c in failed["changes"]}
    assert outcomes["data.filesystem.main"] == "failed"
    assert failed["outcomes"]["failed"] == 1

    # a run record left pending (a kill between its two writes, on a backend that journals them apart)
    with Stack(path) as stack:
        seq = stack.state.journal_pending("cut", "run", stack.state.journal()[-1].record)
        assert [e.seq for e in stack.state.pending()] == [seq]
        with stack.locked("recover"):
            stack.recover()  # resolved without a provider call: it names no resource
        assert not stack.state.pending()

    ui = ui_for(path)
    _, page = ui.get("/history")
    assert f'<tr data-run-id="{failed["id"]}" data-verb="apply" data-ok="false"' in page
    assert "ResourceNotFound" in page and 'data-outcome="failed"' in page
    apply(path)  # converges (the update again, or a create of what went)
    with Stack(path) as stack:
        assert not stack.plan().has_changes
        stack.apply(stack.plan(destroy=True))


def test_a_journal_without_run_records_shows_applies_grouped(tmp_path: Path, ui_for: Any) -> None:
    path = tmp_path / "stack.yaml"
    doc = sim_doc()
    write(path, doc)
    apply(path)
    doc["storage"][0]["size_gb"] = 20
    write(path, doc)
    apply(path)
    db = sqlite3.connect(tmp_path / ".mlplat" / "hist.db")  # as a journal written before run records
    with db:
        db.execute("DELETE FROM journal WHERE op='run'")
    db.close()
    second, first = history(path)
    assert not first["recorded"] and first["who"] is None and first["ok"] is True
    assert first["counts"] == {"create": 3} and second["counts"] == {"update": 1}
    assert {c["address"] for c in first["changes"]} == {"train.cluster.main", "train.pool.gpu",
                                                        "data.filesystem.main"}
    assert first["apply_ids"] == [first["id"]] and first["started"] <= first["finished"] <= second["started"]
    ui = ui_for(path)
    _, body = ui.get("/api/history")
    assert [r["id"] for r in json.loads(body)["runs"]] == [second["id"], first["id"]]
    _, page = ui.get("/history")
    assert f'<tr data-run-id="{first["id"]}" data-verb="apply" data-ok="true" data-recorded="false">' in page
    assert "unknown" in page and "grouped by apply id" in page
    apply(path)  # a new apply: a recorded run above the grouped ones
    newest, *older = history(path)
    assert newest["recorded"] and [r["id"] for r in older] == [second["id"], first["id"]]
    apply(path, destroy=True)


MOVING = """\
apiVersion: mlplat/v1
metadata: {name: moving}
target: local
targets:
  local2: {type: local, root: second}
registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: models/iris-v1.json}
serving:
  - name: iris
    front_door: local
    migration: {steps: [50, 100], window_s: 0.2}
    paths:
      production: {model: "iris:1"}
"""


def test_a_move_behind_a_front_door_records_its_traffic_steps(tmp_path: Path, ui_for: Any) -> None:
    shutil.copytree(STACKS / "models", tmp_path / "models")
    path = tmp_path / "moving.yaml"
    path.write_text(MOVING)
    try:
        apply(path)
        path.write_text(MOVING.replace("    front_door: local\n", "    front_door: local\n    target: local2\n"))
        apply(path)
        moved = history(path)[0]
        assert moved["verb"] == "migrate" and moved["ok"] is True
        [migration] = moved["migrations"]
        assert (migration["component"], migration["source"], migration["destination"]) == ("iris", "local",
                                                                                             "local2")
        assert [p["phase"] for p in migration["phases"]] == ["provision", "transfer", "health-check", "shift",
                                                             "teardown"]
        traffic = [(s["traffic"], s["message"].split(":")[0]) for s in migration["steps"] if "traffic" in s]
        assert traffic == [(50, "50 % of traffic on local2"), (50, "gate at 50 %"),
                           (100, "100 % of traffic on local2"), (100, "gate at 100 %")]
        gates = [s for s in migration["steps"] if s["message"].startswith("gate")]
        assert all("passed" in s["data"] for s in gates)  # the verdict's numbers come with the step
        afters = [s["after"] for s in migration["steps"]]
        assert afters == sorted(afters)
        assert any(c["address"].startswith("iris.front_door") for c in moved["changes"])
        ui = ui_for(path)
        _, page = ui.get("/history?stack=moving")
        assert '<tr data-step-phase="shift" data-traffic="50">' in page
        assert '<tr data-step-phase="shift" data-traffic="100">' in page and "50 %" in page
    finally:
        try:
            apply(path, destroy=True)
        finally:
            kill_all(tmp_path)
    assert not servers_under(tmp_path)
