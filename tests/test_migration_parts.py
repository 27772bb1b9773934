"""The parts of a migration that need no process: the stack-file edit `mlplat migrate` makes, the health gate's
arithmetic, a front door on a target that cannot be one, and a planned move saved and applied exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from provisioner.api import Stack
from provisioner.errors import SpecError
from provisioner.migration.gates import window_verdict
from provisioner.migration.stackfile import set_targets
from provisioner.plan import Plan

from conftest import STACKS

EDITED = """\
# a comment that stays
apiVersion: mlplat/v1
metadata: {name: edits}
target: local
targets:
  other: {type: local, root: other}   # trailing comment
storage:
  - {name: flow, size_gb: 5}
  - name: block
    target: other    # moved once already
    size_gb: 5
"""


def test_set_targets_changes_only_target_values(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(EDITED)
    text = set_targets(path, {"flow": "other", "block": None})
    assert text == EDITED.replace("{name: flow, size_gb: 5}", "{name: flow, target: other, size_gb: 5}").replace(
        "    target: other    # moved once already\n", "")
    path.write_text(text)
    back = set_targets(path, {"flow": None, "block": "other"})
    assert yaml.safe_load(back)["storage"] == [{"name": "flow", "size_gb": 5},
                                               {"name": "block", "size_gb": 5, "target": "other"}]
    assert "# a comment that stays" in back and "# trailing comment" in back


def test_set_targets_names_a_component_the_file_lacks(tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(EDITED)
    with pytest.raises(Exception, match="declares no component 'nope'") as err:
        set_targets(path, {"nope": "other"})
    assert "flow" in str(getattr(err.value, "hint", ""))


def stats(requests: int, errors: int, buckets: dict[str, int]) -> dict[str, dict]:
    return {"dest": {"requests": requests, "errors": errors, "latency_ms_buckets": buckets}}


def test_gate_judges_the_window_not_the_totals() -> None:
    before = stats(1000, 50, {"10": 900, "inf": 100})  # a bad past does not fail this window
    after = stats(1100, 50, {"10": 990, "50": 10, "inf": 100})
    verdict = window_verdict("dest", [before], [after], counted=True, max_error_rate=0.01, max_latency_ms=100)
    # 90 of the window's 100 requests took ≤ 10 ms, 10 took ≤ 50 ms: the 95th is in the 50 ms bucket
    assert verdict.passed and (verdict.requests, verdict.errors, verdict.p95_ms) == (100, 0, 50.0)
    failing = stats(1100, 52, {"10": 990, "50": 10, "inf": 100})
    verdict = window_verdict("dest", [before], [failing], counted=True, max_error_rate=0.01, max_latency_ms=100)
    assert not verdict.passed and "error rate over 1.0%" in verdict.describe()
    slow = stats(1100, 50, {"10": 900, "250": 100, "inf": 100})
    verdict = window_verdict("dest", [before], [slow], counted=True, max_error_rate=0.01, max_latency_ms=100)
    assert not verdict.passed and verdict.p95_ms == 250.0


def test_gate_without_requests_or_counters_says_so() -> None:
    quiet = window_verdict("dest", [{}], [{}], counted=True, max_error_rate=0.0, max_latency_ms=1)
    assert quiet.passed and "no requests reached dest" in quiet.describe()
    dns = window_verdict("dest", [], [], counted=False, max_error_rate=0.0, max_latency_ms=1)
    assert dns.passed and "weighted DNS" in dns.describe()


def test_a_front_door_on_a_target_that_cannot_be_one_is_refused_where_it_is_written(tmp_path: Path) -> None:
    shutil.copytree(STACKS / "models", tmp_path / "models")
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "mlplat/v1", "metadata": {"name": "door"}, "target": "local",
        "targets": {"fake": {"type": "sim", "store": str(tmp_path / "sim")}},
        "registry": {"name": "models", "models": [{"name": "iris", "version": "1", "artifact": "models/iris-v1.json"}]},
        "serving": [{"name": "iris", "front_door": ["fake"], "paths": {"production": {"model": "iris:1"}}}]},
        sort_keys=False))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "- fake" in text)
    with pytest.raises(SpecError) as err:
        Stack(path).validate()
    assert f"{path}:{line}:" in str(err.value) and "cannot be a front door" in str(err.value), str(err.value)


def test_a_saved_migration_plan_is_applied_exactly(tmp_path: Path) -> None:
    shutil.copytree(STACKS / "models", tmp_path / "models")
    path = tmp_path / "stack.yaml"
    doc = {"apiVersion": "mlplat/v1", "metadata": {"name": "saved"}, "target": "local",
           "targets": {"other": {"type": "local", "root": "other"}},
           "storage": [{"name": "data", "size_gb": 1}]}
    path.write_text(yaml.safe_dump(doc))
    stack = Stack(path)
    stack.apply(stack.plan())
    stack.close()
    doc["storage"][0]["target"] = "other"
    path.write_text(yaml.safe_dump(doc))
    stack = Stack(path)
    plan = Plan.loads(stack.plan().dumps())
    [move] = plan.migrations
    assert (move.kind, move.source, move.destination, move.mode) == ("storage", "local", "other", "move")
    assert any("contents of storage 'data' are not copied" in note for note in move.notes)
    assert {c.phase for c in plan.changes if c.action == "delete"} == {"teardown"}
    stack.apply(plan)
    records = stack.state.resources()
    assert [r.target for r in records.values()] == ["other"] and (tmp_path / "other" / "volumes" / "data").is_dir()
    assert not (tmp_path / ".mlplat" / "saved" / "local" / "volumes" / "data").exists()
    assert not stack.plan().has_changes
    stack.apply(stack.plan(destroy=True))
    stack.close()
