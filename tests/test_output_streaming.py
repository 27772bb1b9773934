"""What apply/destroy show while they run (docs/output.md), through the CLI: `--json` as one JSON object per line
(the plan, each event, heartbeats, the summary or an error), plain lines with a count and heartbeats in a pipe, a
live view with the count in a terminal; plan values are never cut."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from json_lines import json_lines

from provisioner.render import fmt

from conftest import run_mlplat
from local_processes import kill_all

STACK = """\
apiVersion: mlplat/v1
metadata:
  name: demo
target: sim
targets:
  sim:
    store: cloud
{settings}clusters:
  - name: train
    gpu_pools:
      - {{name: gpu, accelerator: h100, gpus_per_node: 8, nodes: {{min: 1, max: 2}}}}
storage:
  - {{name: shared, size_gb: 10}}
"""
RESOURCES = ["shared.filesystem.main", "train.cluster.main", "train.pool.gpu"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def sim_stack(directory: Path, **settings: object) -> Path:
    path = directory / "mlplat.yaml"
    path.write_text(STACK.format(settings="".join(f"    {k}: {json.dumps(v)}\n" for k, v in settings.items())))
    return path


def mlplat(directory: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    return run_mlplat(*args, cwd=directory, env=env, check=check)


def test_apply_json_streams_the_plan_each_step_and_the_summary(tmp_path: Path) -> None:
    sim_stack(tmp_path)

    lines = json_lines(mlplat(tmp_path, "apply", "--yes", "--json").stdout)

    plan, events, summary = lines[0], lines[1:-1], lines[-1]
    assert plan["type"] == "plan" and plan["summary"]["create"] == 3
    assert sorted(c["address"] for c in plan["changes"]) == RESOURCES
    for address in RESOURCES:
        kinds = [e["type"] for e in events if e["address"] == address]
        assert kinds == ["step-start", "step-done"], (address, kinds)
    done = [e for e in events if e["type"] == "step-done"]
    assert [(e["done"], e["total"]) for e in done] == [(1, 3), (2, 3), (3, 3)]
    for e in events:
        assert e["action"] == "create" and isinstance(e["elapsed"], float)
        assert datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).year >= 2024
    assert summary["type"] == "summary" and summary["applied"] == 3
    assert summary["summary"] == plan["summary"]
    assert sorted(summary["outputs"]) == ["shared.id", "train.id"] and summary["elapsed_s"] >= 0


def test_the_quickstart_on_local_streams_every_step_and_its_outputs(quickstart_dir: Path) -> None:
    stack = str(quickstart_dir / "quickstart.yaml")
    try:
        applied = json_lines(mlplat(quickstart_dir, "apply", "-f", stack, "--yes", "--json").stdout)
        destroyed = json_lines(mlplat(quickstart_dir, "destroy", "-f", stack, "--yes", "--json").stdout)
    finally:
        kill_all(quickstart_dir)

    for lines in (applied, destroyed):
        plan, summary = lines[0], lines[-1]
        assert plan["type"] == "plan" and summary["type"] == "summary"
        addresses = sorted(c["address"] for c in plan["changes"])
        assert sorted(e["address"] for e in lines if e["type"] == "step-start") == addresses
        assert sorted(e["address"] for e in lines if e["type"] == "step-done") == addresses
        last_done = [e for e in lines if e["type"] == "step-done"][-1]
        assert summary["applied"] == len(addresses) == last_done["total"] == last_done["done"]
    assert applied[-1]["outputs"]["iris.url"].startswith("http://127.0.0.1:")


def test_destroy_json_streams_too_and_a_no_op_apply_is_a_plan_and_a_summary(tmp_path: Path) -> None:
    sim_stack(tmp_path)
    mlplat(tmp_path, "apply", "--yes")

    again = json_lines(mlplat(tmp_path, "apply", "--yes", "--json").stdout)
    destroyed = json_lines(mlplat(tmp_path, "destroy", "--yes", "--json").stdout)

    assert [line["type"] for line in again] == ["plan", "summary"] and again[-1]["applied"] == 0
    assert destroyed[0]["type"] == "plan" and destroyed[0]["destroy"] is True
    assert sorted(e["address"] for e in destroyed if e["type"] == "step-done") == RESOURCES
    assert {e["action"] for e in destroyed if e["type"] == "step-done"} == {"delete"}
    assert destroyed[-1]["type"] == "summary" and destroyed[-1]["applied"] == 3


def test_a_failed_apply_ends_with_an_error_line_and_no_traceback(tmp_path: Path) -> None:
    sim_stack(tmp_path, throttle_first=50)  # more throttling than the retries wait out

    proc = mlplat(tmp_path, "apply", "--yes", "--json", check=False)

    lines = json_lines(proc.stdout)  # every line is JSON, even on failure
    assert proc.returncode == 1
    assert lines[0]["type"] == "plan"
    assert any(e["type"] == "step-retry" and "ThrottlingException" in e["message"] for e in lines)
    assert any(e["type"] == "step-failed" for e in lines)
    assert lines[-1]["type"] == "error" and lines[-1]["error"].startswith("apply failed")
    assert "continues from here" in lines[-1]["hint"]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_an_error_before_the_plan_is_one_error_line(tmp_path: Path) -> None:
    sim_stack(tmp_path).write_text("apiVersion: mlplat/v1\nmetadata: {name: demo}\ntarget: sim\nstorage:\n"
                                   "  - {name: shared, size_gb: -1}\n")

    proc = mlplat(tmp_path, "apply", "--yes", "--json", check=False)

    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    [line] = json_lines(proc.stdout)
    assert line["type"] == "error" and "size_gb" in line["error"]


def test_a_slow_step_gets_heartbeats_in_json_and_in_plain_lines(tmp_path: Path) -> None:
    sim_stack(tmp_path, latency_ms=900)

    streamed = json_lines(mlplat(tmp_path, "apply", "--yes", "--json", MLPLAT_HEARTBEAT_S="0.3").stdout)
    plain = mlplat(tmp_path, "destroy", "--yes", MLPLAT_HEARTBEAT_S="0.3").stderr

    beats = [e for e in streamed if e["type"] == "heartbeat"]
    assert {e["address"] for e in beats} == set(RESOURCES), beats
    first = next(e for e in beats if e["address"] == "shared.filesystem.main")
    assert first["message"] == "still creating" and first["elapsed"] == pytest.approx(0.3)
    assert streamed[-1]["type"] == "summary"  # the heartbeats stopped before it: nothing follows
    assert re.search(r"shared\.filesystem\.main: still deleting… \[0\.3s elapsed\]", plain), plain
    assert re.search(r"\[\d/3\] train\.cluster\.main: delete done", plain), plain
    last = plain.splitlines()[-1]  # no heartbeat after the apply: the last step's done line comes last
    assert "still" not in last and "done" in last, plain


def test_plain_lines_in_a_pipe_count_the_steps_and_say_nothing_about_heartbeats(tmp_path: Path) -> None:
    sim_stack(tmp_path)

    proc = mlplat(tmp_path, "apply", "--yes")

    done = [line for line in proc.stderr.splitlines() if "create done" in line]
    assert sorted(re.match(r"  \[(\d)/3\] ", line).group(1) for line in done) == ["1", "2", "3"], proc.stderr
    assert "still" not in proc.stderr and "\x1b[" not in proc.stderr + proc.stdout
    assert "Apply complete! 3 step(s)" in proc.stdout


def test_ctrl_c_ends_the_json_stream_with_an_error_line(tmp_path: Path) -> None:
    sim_stack(tmp_path, latency_ms=3000)
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "provisioner.cli", "apply", "--yes", "--json"], cwd=tmp_path,
                            env=env, text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:  # each line arrives as it happens (flushed), not at exit
        seen.append(json.loads(line))
        if seen[-1]["type"] == "step-start":
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=60)
    lines = seen + json_lines(rest)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert lines[-1]["type"] == "error" and "interrupted" in lines[-1]["error"], lines[-1]


def run_in_terminal(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run mlplat with stdout and stderr on a pseudo-terminal: (exit code, everything it drew, ANSI removed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "provisioner.cli", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=10)
    return code, ANSI.sub("", b"".join(chunks).decode(errors="replace")).replace("\r", "\n")


def test_a_terminal_gets_a_live_view_with_the_count_and_each_running_step(tmp_path: Path) -> None:
    sim_stack(tmp_path, latency_ms=1200)  # long enough for a few redraws and a heartbeat (0.5 s) per step
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI")}
    env.update(TERM="xterm-256color", COLUMNS="160", LINES="40", MLPLAT_HEARTBEAT_S="0.5")

    code, screen = run_in_terminal(["apply", "--yes"], tmp_path, env)

    assert code == 0, screen
    assert re.search(r"\b[0-2]/3\b done", screen), screen  # the count while it ran
    assert re.search(r"shared\.filesystem\.main: creating… \d+s", screen), screen  # a running step, its time
    assert "(still creating)" in screen, screen  # the heartbeat of a step running past the interval
    assert re.search(r"\[3/3\] \S+: create done", screen), screen  # finished steps stay above it
    assert "Apply complete!" in screen


def test_long_plan_values_are_shown_whole_folded_under_their_key(tmp_path: Path) -> None:
    long_name = "iris-" + "x" * 230
    stack = tmp_path / "mlplat.yaml"
    text = ("apiVersion: mlplat/v1\nmetadata: {name: demo}\ntarget: sim\ntargets:\n  sim: {store: cloud}\n"
            "serving:\n  - name: iris\n    paths:\n      production: {model: \"%s:1\", weight: 100}\n")
    stack.write_text(text % long_name)
    first = mlplat(tmp_path, "apply", "--yes").stdout
    stack.write_text(text % long_name + '      experimental: {model: "iris-classifier-experimental:2", weight: 0}\n')

    shown = mlplat(tmp_path, "preview").stdout
    as_json = json.loads(mlplat(tmp_path, "preview", "--json").stdout)

    assert f'ref: "{long_name}:1"' in first and "…" not in first  # a long string: whole, on its line
    # a list grown past the width folds: the whole new list, one key a line, indented under `~ variants:`
    folded = re.search(r"~ variants: \[.*\] → \[\n(.*?\n      \])", shown, re.S)
    assert folded is not None, shown
    assert '"path": "experimental"' in folded.group(1) and '"path": "production"' in folded.group(1)
    assert all(line.startswith("        ") for line in folded.group(1).splitlines()[:-1])
    assert "…" not in shown
    config = next(c for c in as_json["changes"] if c["address"] == "iris.endpoint_config.main")
    assert [v["path"] for v in config["after"]["variants"]] == ["production", "experimental"]


def test_fmt_keeps_short_values_on_one_line_and_never_cuts() -> None:
    assert fmt({"a": 1}) == '{"a": 1}'
    long = {"key": "v" * 100, "list": [1, 2]}
    folded = fmt(long, 80, indent=4)
    assert json.loads(folded) == long and folded.splitlines()[1].startswith('      "key"')
    assert fmt("s" * 500) == json.dumps("s" * 500)


def test_secrets_never_reach_the_json_stream(quickstart_dir: Path) -> None:
    key = "k3y-Zq8w9ErT5yUi0pL2-stream"
    stack = quickstart_dir / "quickstart.yaml"
    stack.write_text(stack.read_text().replace(
        "  - name: iris\n    paths:", "  - name: iris\n    auth: key\n    api_key: ${secret:IRIS_API_KEY}\n    paths:"))
    env = {"MLPLAT_STATE_PASSPHRASE": "a passphrase for the tests", "IRIS_API_KEY": key}
    try:
        applied = mlplat(quickstart_dir, "apply", "-f", str(stack), "--yes", "--json", **env)
        destroyed = mlplat(quickstart_dir, "destroy", "-f", str(stack), "--yes", "--json", **env)
    finally:
        kill_all(quickstart_dir)

    for proc in (applied, destroyed):
        assert key not in proc.stdout + proc.stderr
        json_lines(proc.stdout)  # still one object per line
    assert '"(sensitive)"' in applied.stdout.splitlines()[0]  # the plan line shows that there is a key


def test_every_documented_line_is_one_json_object_of_a_known_type() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "output.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    lines = [json.loads(line) for block in blocks for line in block.splitlines()]
    known = {"plan", "step-start", "step-done", "step-failed", "step-retry", "step-skipped", "step-interrupted",
             "progress", "warning", "recovered", "migration", "heartbeat", "summary", "error"}
    assert {line["type"] for line in lines} <= known and len(lines) >= 10
    assert {"plan", "summary", "error", "heartbeat", "step-done"} <= {line["type"] for line in lines}
