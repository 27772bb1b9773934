"""The quickstart end to end on the local target: real processes, real HTTP, the measured split."""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlplat_plugins.local.runtime.processes import is_alive

from conftest import Cli, run_mlplat

BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}).encode()


def invoke(url: str) -> tuple[str, dict]:
    req = urllib.request.Request(url + "/invocations", data=BODY, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["X-Mlplat-Path"], json.loads(resp.read())


def measure_split(url: str, n: int = 1000) -> Counter[str]:
    return Counter(invoke(url)[0] for _ in range(n))


def set_weights(stack: Path, production: int, experimental: int) -> None:
    text = stack.read_text()
    text = text.replace('production: {model: "iris:1", weight: 80}',
                        f'production: {{model: "iris:1", weight: {production}}}')
    text = text.replace('experimental: {model: "iris:2", weight: 20}',
                        f'experimental: {{model: "iris:2", weight: {experimental}}}')
    stack.write_text(text)


@pytest.fixture
def applied(quickstart_dir: Path) -> Iterator[tuple[Path, str]]:
    stack = quickstart_dir / "quickstart.yaml"
    run_mlplat("apply", "-f", str(stack), "--yes", cwd=quickstart_dir)
    try:
        url = run_mlplat("output", "iris.url", "-f", str(stack), cwd=quickstart_dir).stdout.strip()
        yield stack, url
    finally:
        run_mlplat("destroy", "-f", str(stack), "--yes", cwd=quickstart_dir, check=False)


def router_pid(stack: Path) -> int:
    state = json.loads(run_mlplat("state", "show", "iris.router.main", "-f", str(stack), cwd=stack.parent).stdout)
    return state["outputs"]["pid"]


def test_endpoint_serves_predictions_and_names_the_path(applied: tuple[Path, str]) -> None:
    _, url = applied
    path, body = invoke(url)
    assert path in ("production", "experimental")
    assert [p["label"] for p in body["predictions"]] == ["setosa", "virginica"]
    assert body["model_id"] == ("iris:1" if path == "production" else "iris:2")


def test_thousand_requests_follow_the_declared_split(applied: tuple[Path, str]) -> None:
    _, url = applied
    counts = measure_split(url)
    assert sum(counts.values()) == 1000
    assert abs(counts["production"] / 10 - 80) <= 5, counts
    assert abs(counts["experimental"] / 10 - 20) <= 5, counts


def test_preview_after_apply_is_a_no_op(applied: tuple[Path, str], cli: Cli) -> None:
    stack, _ = applied
    proc = cli("preview", "-f", str(stack), "--detailed-exitcode", cwd=stack.parent, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No changes" in proc.stdout


def test_weight_edit_is_an_in_place_update_applied_without_downtime(applied: tuple[Path, str], cli: Cli) -> None:
    stack, url = applied
    pid_before = router_pid(stack)
    set_weights(stack, 50, 50)
    preview = cli("preview", "-f", str(stack), "--json", "--detailed-exitcode", cwd=stack.parent, check=False)
    assert preview.returncode == 2
    actions = {c["address"]: c["action"] for c in json.loads(preview.stdout)["changes"]}
    assert actions["iris.router.main"] == "update"
    assert {a for addr, a in actions.items() if addr != "iris.router.main"} == {"noop"}

    failures: list[str] = []
    served = Counter[str]()
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                served[invoke(url)[0]] += 1
            except (urllib.error.URLError, OSError) as err:
                failures.append(repr(err))

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        cli("apply", "-f", str(stack), "--yes", cwd=stack.parent)
    finally:
        stop.set()
        sender.join()
    assert failures == []
    assert sum(served.values()) > 0
    assert router_pid(stack) == pid_before  # the same process: updated live, not restarted
    counts = measure_split(url)
    assert abs(counts["production"] / 10 - 50) <= 5, counts


def test_shadow_mode_answers_from_production_and_mirrors_to_experimental(applied: tuple[Path, str],
                                                                         cli: Cli) -> None:
    stack, url = applied
    text = stack.read_text().replace('weight: 80}', 'weight: 100}')
    stack.write_text(text.replace('experimental: {model: "iris:2", weight: 20}',
                                  'experimental: {model: "iris:2", mode: shadow}'))
    cli("apply", "-f", str(stack), "--yes", cwd=stack.parent)
    assert {invoke(url)[0] for _ in range(50)} == {"production"}
    stats = json.loads(urllib.request.urlopen(url + "/-/stats", timeout=5).read())
    assert stats["counts"].get("mirror_queued.experimental", 0) > 0


def test_killed_model_server_shows_as_drift_and_apply_restores_it(applied: tuple[Path, str], cli: Cli) -> None:
    stack, url = applied
    record = json.loads(cli("state", "show", "iris.model_server.experimental", "-f", str(stack),
                            cwd=stack.parent).stdout)
    os.kill(record["outputs"]["pid"], signal.SIGKILL)
    preview = cli("preview", "-f", str(stack), "--json", "--detailed-exitcode", cwd=stack.parent, check=False)
    assert preview.returncode == 2
    change = next(c for c in json.loads(preview.stdout)["changes"] if c["address"] == "iris.model_server.experimental")
    assert change["action"] == "create" and change["drift"] == {"$gone": True}
    cli("apply", "-f", str(stack), "--yes", cwd=stack.parent)
    assert cli("preview", "-f", str(stack), "--detailed-exitcode", cwd=stack.parent, check=False).returncode == 0
    assert "experimental" in {invoke(url)[0] for _ in range(200)}


def test_destroy_stops_every_process_and_empties_the_state(quickstart_dir: Path, cli: Cli) -> None:
    stack = quickstart_dir / "quickstart.yaml"
    cli("apply", "-f", str(stack), "--yes", cwd=quickstart_dir)
    pids = [json.loads(cli("state", "show", a, "-f", str(stack), cwd=quickstart_dir).stdout)["outputs"]["pid"]
            for a in ("iris.router.main", "iris.model_server.production", "iris.model_server.experimental")]
    cli("destroy", "-f", str(stack), "--yes", cwd=quickstart_dir)
    assert [pid for pid in pids if is_alive(pid)] == []
    assert cli("state", "list", "-f", str(stack), cwd=quickstart_dir).stdout.strip() == ""


def test_killed_router_is_recreated_on_the_same_url(applied: tuple[Path, str], cli: Cli) -> None:
    stack, url = applied
    os.kill(router_pid(stack), signal.SIGKILL)
    cli("apply", "-f", str(stack), "--yes", cwd=stack.parent)
    assert cli("output", "iris.url", "-f", str(stack), cwd=stack.parent).stdout.strip() == url
    assert invoke(url)[0] in ("production", "experimental")


def test_registry_holds_image_repositories_and_model_versions(applied: tuple[Path, str], cli: Cli) -> None:
    stack, _ = applied
    outputs = json.loads(cli("output", "--json", "-f", str(stack), cwd=stack.parent).stdout)
    assert Path(outputs["models.image.iris-server"]).is_dir()
    model = json.loads(Path(outputs["models.model.iris:2"]).read_text())
    assert (model["name"], model["version"]) == ("iris", "2")
