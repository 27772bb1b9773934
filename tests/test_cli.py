"""The `mlplat` command, driven as a user drives it: a real process per command, a stack file on disk, and the
`sim` target (a simulated cloud keeping one JSON file per object in a directory)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from json_lines import summary_of

from provisioner.state.base import LockInfo
from provisioner.state.sqlite import SqliteState

STACK = """\
apiVersion: mlplat/v1
metadata:
  name: demo
target: sim
targets:
  sim:
    store: {store}
clusters:
  - name: train
    gpu_pools:
      - {{name: gpu, accelerator: h100, gpus_per_node: 8, nodes: {{min: 1, max: 2}}}}
storage:
  - {{name: shared, size_gb: 10}}
"""
RESOURCES = ["shared.filesystem.main", "train.cluster.main", "train.pool.gpu"]


class Project:
    """A directory holding a stack file, its state (.mlplat/demo.db) and the sim cloud's store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "cloud"
        self.stack = root / "mlplat.yaml"
        self.write()

    def write(self, extra: str = "", **settings: object) -> None:
        text = STACK.format(store=json.dumps(str(self.store)))
        text = text.replace("targets:\n  sim:\n", "targets:\n  sim:\n" +
                            "".join(f"    {k}: {json.dumps(v)}\n" for k, v in settings.items()))
        self.stack.write_text(text + extra)

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLPLAT_")}
        env["COLUMNS"] = "250"  # rich wraps at the terminal width; keep messages on one line
        return subprocess.run([sys.executable, "-m", "provisioner.cli", *args], cwd=cwd or self.root, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)

    def ok(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, cwd=cwd)
        assert result.returncode == 0, f"mlplat {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        return result

    def objects(self) -> list[str]:
        return sorted(p.name for p in (self.store / "objects").glob("*.json"))

    def creates(self) -> list[str]:
        log = self.store / "creates.log"
        return log.read_text().splitlines() if log.exists() else []

    def state_list(self) -> list[str]:
        return [line.split("\t")[0] for line in self.ok("state", "list").stdout.splitlines()]

    def state_db(self) -> SqliteState:
        return SqliteState(self.root / ".mlplat" / "demo.db", "demo")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def one_line(text: str) -> str:
    return " ".join(text.split())


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- basics -----------------------------------------------------------------------------------------------------
def test_help_lists_the_commands(project):
    result = project.ok("--help")

    for command in ("preview", "apply", "destroy", "output", "state", "plugins", "schema", "graph"):
        assert command in result.stdout


def test_preview_detailed_exitcode_is_2_before_apply_and_0_after(project):
    assert project.run("preview", "--detailed-exitcode").returncode == 2
    project.ok("apply", "--yes")
    assert project.run("preview", "--detailed-exitcode").returncode == 0


def test_apply_without_yes_refuses_when_stdin_is_not_a_terminal(project):
    result = project.run("apply")

    assert result.returncode == 1
    assert "refusing to apply without --yes" in one_line(result.stderr)
    assert_no_traceback(result)
    assert project.objects() == []
    assert project.state_list() == []


def test_apply_yes_creates_the_resources_and_state_list_lists_them(project):
    project.ok("apply", "--yes")

    assert project.state_list() == RESOURCES
    assert len(project.objects()) == 3
    assert len(project.creates()) == 3


def test_apply_retries_a_throttled_cloud(project):
    project.write(throttle_first=2)

    result = project.ok("apply", "--yes")

    assert "retrying" in result.stderr
    assert project.state_list() == RESOURCES
    assert len(project.creates()) == 3


# -- saved plans ------------------------------------------------------------------------------------------------
def test_saved_plan_is_applied_exactly(project):
    project.ok("preview", "-o", "plan.json")
    project.write(extra="  - {name: scratch, size_gb: 5}\n")  # the stack file moves on after the preview

    project.ok("apply", "plan.json")

    assert project.state_list() == RESOURCES  # what the plan said; not the scratch storage added since
    assert project.run("preview", "--detailed-exitcode").returncode == 2


def test_saved_plan_can_be_applied_from_another_directory(project):
    project.ok("preview", "-o", "plan.json")
    elsewhere = project.root / "elsewhere"
    elsewhere.mkdir()

    project.ok("apply", str(project.root / "plan.json"), cwd=elsewhere)

    assert project.state_list() == RESOURCES


def test_stale_saved_plan_is_refused_and_changes_nothing(project):
    project.ok("preview", "-o", "plan.json")
    project.ok("apply", "--yes")  # the state moves on after the saved plan was made
    objects = project.objects()

    result = project.run("apply", "plan.json")

    assert result.returncode == 1
    assert "stale" in result.stderr
    assert_no_traceback(result)
    assert project.objects() == objects
    assert len(project.creates()) == 3


# -- machine-readable output ------------------------------------------------------------------------------------
def test_preview_json_reports_summary_counts(project):
    data = json.loads(project.ok("preview", "--json").stdout)

    assert data["summary"] == {"create": 3, "update": 0, "replace": 0, "delete": 0, "noop": 0}
    assert sorted(c["address"] for c in data["changes"]) == RESOURCES


def test_apply_json_reports_the_output_values(project):
    data = summary_of(project.ok("apply", "--yes", "--json").stdout)

    assert data["applied"] == 3
    ids = {r["address"]: r["id"] for r in json.loads(project.ok("state", "list", "--json").stdout)["resources"]}
    assert data["outputs"] == {"shared.id": ids["shared.filesystem.main"], "train.id": ids["train.cluster.main"]}


def test_output_json_prints_the_recorded_outputs(project):
    project.ok("apply", "--yes")

    outputs = json.loads(project.ok("output", "--json").stdout)

    assert sorted(outputs) == ["shared.id", "train.id"]
    assert project.ok("output", "shared.id").stdout.strip() == outputs["shared.id"]


def test_errors_in_json_mode_are_json_too(project):
    project.stack.write_text(project.stack.read_text().replace("size_gb: 10", "size_gb: lots"))

    result = project.run("preview", "--json")

    assert result.returncode == 1
    assert "size_gb" in json.loads(result.stdout)["error"]


# -- errors the user can cause ----------------------------------------------------------------------------------
def test_stack_file_error_is_located_without_traceback(project):
    project.stack.write_text(project.stack.read_text().replace("size_gb: 10", "size_gb: lots"))

    result = project.run("preview")

    assert result.returncode == 1
    assert re.search(r"mlplat\.yaml:\d+:\d+: storage\[0\]\.size_gb", result.stderr), result.stderr
    assert_no_traceback(result)


def test_unknown_target_lists_the_installed_targets(project):
    project.stack.write_text(project.stack.read_text().replace("target: sim", "target: nimbus"))

    result = project.run("preview")

    assert result.returncode == 1
    message = one_line(result.stderr)
    assert "unknown target 'nimbus'" in message
    assert re.search(r"installed target types: [^;]*\blocal\b", message)
    assert re.search(r"installed target types: [^;]*\bsim\b", message)
    assert_no_traceback(result)


def test_missing_stack_file_is_a_clear_error(project):
    result = project.run("preview", "-f", "nowhere.yaml")

    assert result.returncode == 1
    assert "nowhere.yaml: no such stack file" in result.stderr
    assert_no_traceback(result)


# -- other commands ---------------------------------------------------------------------------------------------
def test_schema_prints_a_json_schema_of_the_stack_file(project):
    schema = json.loads(project.ok("schema").stdout)

    assert "apiVersion" in schema["properties"]
    assert schema["$schema"].startswith("https://json-schema.org/")


def test_plugins_lists_the_local_and_sim_targets_found_through_entry_points(project):
    data = json.loads(project.ok("plugins", "--json").stdout)

    assert {"local", "sim"} <= set(data["targets"])
    by_target = {t["name"]: p for p in data["plugins"] for t in p["targets"]}
    for target in ("local", "sim"):
        assert by_target[target]["distribution"] is not None  # registered by the mlplat.plugins entry point
        assert by_target[target]["module"] == f"mlplat_plugins.{target}.plugin"
    sdk = {t["name"]: t["sdk"] for p in data["plugins"] for t in p["targets"]}
    assert sdk["aws"]["installed"] and sdk["aws"]["modules"]["boto3"]  # the test extra installs boto3
    assert sdk["local"] == {"installed": True, "modules": {}, "install": None}
    text = project.ok("plugins").stdout
    assert "target local" in text and "target sim" in text and "SDK boto3 " in text


def test_graph_prints_mermaid(project):
    text = project.ok("graph").stdout

    assert text.startswith("graph TD")
    nodes = {address: node for node, address in re.findall(r'^\s+(r\d+)\["([^<"]+)<br/>', text, re.M)}
    assert sorted(nodes) == RESOURCES
    assert f"{nodes['train.cluster.main']} --> {nodes['train.pool.gpu']}" in text


def test_destroy_deletes_every_object_and_empties_the_state(project):
    project.ok("apply", "--yes")
    assert project.objects()

    project.ok("destroy", "--yes")

    assert project.objects() == []
    assert project.state_list() == []


# -- locking ----------------------------------------------------------------------------------------------------
def test_apply_while_a_live_process_holds_the_lock_fails_naming_the_holder(project):
    state = project.state_db()
    state.acquire_lock(LockInfo("held0001", "apply"))  # this test process: alive
    try:
        result = project.run("apply", "--yes")
    finally:
        state.close()

    assert result.returncode == 1
    message = one_line(result.stderr)
    assert "locked by" in message
    assert f"pid {os.getpid()}" in message and "lock id held0001" in message
    assert "mlplat state unlock held0001" in message
    assert_no_traceback(result)
    assert project.objects() == []


def test_state_unlock_clears_a_held_lock(project):
    state = project.state_db()
    state.acquire_lock(LockInfo("held0002", "apply"))
    state.close()

    project.ok("state", "unlock", "held0002")

    project.ok("apply", "--yes")
    assert project.state_list() == RESOURCES


def test_state_unlock_with_an_unknown_id_fails(project):
    result = project.run("state", "unlock", "nosuchid")

    assert result.returncode == 1
    assert "no lock with id 'nosuchid'" in result.stderr


def test_lock_of_a_dead_process_is_taken_over_with_a_warning(project):
    pid = dead_pid()
    state = project.state_db()
    state.acquire_lock(LockInfo("dead0003", "apply", pid=pid))
    state.close()

    result = project.ok("apply", "--yes")

    message = one_line(result.stderr)
    assert "warning" in message and "took over the lock" in message and f"pid {pid}" in message
    assert project.state_list() == RESOURCES
