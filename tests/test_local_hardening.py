"""Defects found by trying to break the local target, each held to its fix: owner markers, the internal token,
outputs after a crash, damaged and lost state, secrets in children's environments, deep JSON, what destroy
leaves behind."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlplat_plugins.local.runtime.processes import read_runtime

from conftest import run_mlplat
from local_processes import kill_all, recorded_servers, servers_under

KEY = "k3y-for-the-hardening-tests-0123456789"
SECRETS = {"IRIS_API_KEY": KEY, "MLPLAT_STATE_PASSPHRASE": "a passphrase for the tests"}


@pytest.fixture
def stack(quickstart_dir: Path) -> Iterator[Path]:
    path = quickstart_dir / "quickstart.yaml"
    try:
        yield path
    finally:
        run_mlplat("destroy", "-f", str(path), "--yes", cwd=quickstart_dir, check=False, env=SECRETS)
        kill_all(quickstart_dir)


def apply(stack: Path, *args: str, check: bool = True, env: dict[str, str] | None = None) -> object:
    return run_mlplat("apply", "-f", str(stack), "--yes", *args, cwd=stack.parent, check=check, env=env)


def serving_dir(stack: Path) -> Path:
    return stack.parent / ".mlplat" / "quickstart" / "local" / "serving" / "iris"


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/invocations", data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


IRIS = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()


# -- 1. owner markers ------------------------------------------------------------------------------------------
def test_an_empty_owner_marker_left_by_a_crash_is_adopted_not_someone_elses(stack: Path) -> None:
    apply(stack)
    production = next(serving_dir(stack).glob("production-*"))
    run_mlplat("destroy", "-f", str(stack), "--yes", cwd=stack.parent)
    production.mkdir(parents=True)
    (production / ".mlplat-owner").write_bytes(b"")  # what a kill mid-write left on older versions
    proc = apply(stack, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "already belongs to" not in proc.stderr
    assert (production / ".mlplat-owner").read_text() == "iris.model_server.production\n"


def test_a_marker_naming_another_resource_is_still_refused(stack: Path) -> None:
    apply(stack)
    production = next(serving_dir(stack).glob("production-*"))
    run_mlplat("destroy", "-f", str(stack), "--yes", cwd=stack.parent)
    production.mkdir(parents=True)
    (production / ".mlplat-owner").write_text("other.model_server.production\n")
    proc = apply(stack, check=False)
    assert proc.returncode == 1
    assert "already belongs to other.model_server.production" in proc.stderr


def test_destroy_stops_a_server_no_record_names(stack: Path) -> None:
    apply(stack)
    production = next(serving_dir(stack).glob("production-*"))
    orphan = read_runtime(production / "runtime.json")
    assert orphan is not None
    db = sqlite3.connect(stack.parent / ".mlplat" / "quickstart.db")
    db.execute("DELETE FROM resources WHERE address = 'iris.model_server.production'")  # its record lost
    db.commit()
    db.close()
    proc = run_mlplat("destroy", "-f", str(stack), "--yes", cwd=stack.parent)
    assert proc.returncode == 0
    assert servers_under(stack.parent) == {}, "destroy exited 0 while a server it started still runs"
    assert "leftover" in proc.stderr and str(orphan.pid) in proc.stderr


def test_the_sweep_never_touches_what_a_volume_holds(stack: Path) -> None:
    apply(stack)
    volume = stack.parent / ".mlplat" / "quickstart" / "local" / "volumes" / "shared"
    kept = [volume / "checkpoint.tmp", volume / ".upload.123.456.tmp", volume / "runs" / "empty"]
    kept[2].mkdir(parents=True)
    for path in kept[:2]:
        path.write_text("the user's")
    assert "No changes" in apply(stack).stdout  # every apply sweeps
    assert all(path.exists() for path in kept)


# -- 3. the internal token -------------------------------------------------------------------------------------
def test_model_servers_listen_on_loopback_and_answer_only_the_router(stack: Path) -> None:
    text = stack.read_text().replace("target: local\n", "target: local\ntargets:\n  local: {host: 0.0.0.0}\n")
    stack.write_text(text.replace("  - name: iris\n", "  - name: iris\n    auth: key\n"
                                                      "    api_key: ${secret:IRIS_API_KEY}\n"))
    apply(stack, env=SECRETS)
    url = run_mlplat("output", "iris.url", "-f", str(stack), cwd=stack.parent, env=SECRETS).stdout.strip()
    for run_dir in serving_dir(stack).glob("*-*"):
        info = read_runtime(run_dir / "runtime.json")
        assert info is not None and info.host == "127.0.0.1", run_dir  # whatever the router's host
        status, body = post(info.url, IRIS)
        assert status == 403, body  # no key, no token: refused
        status, _ = post(info.url, IRIS, {"X-Api-Key": KEY, "X-Mlplat-Internal": "guess" * 10})
        assert status == 403
    router = read_runtime(serving_dir(stack) / "router" / "runtime.json")
    assert router is not None and router.host == "0.0.0.0"
    assert post(url, IRIS)[0] == 401
    status, body = post(url, IRIS, {"X-Api-Key": KEY})
    assert status == 200 and body["predictions"][0]["label"] == "setosa"


# -- 4. outputs after a crash ----------------------------------------------------------------------------------
def test_a_kill_during_the_router_create_keeps_the_outputs(stack: Path) -> None:
    # the router is the 9th and last step with --parallelism 1; the kill lands after it started the process
    crashed = run_mlplat("apply", "-f", str(stack), "--yes", "--parallelism", "1", cwd=stack.parent, check=False,
                         env={"MLPLAT_CRASH_AT": "before-done:9"})
    assert crashed.returncode == -signal.SIGKILL
    resumed = apply(stack)
    assert "adopted" in resumed.stderr
    url = run_mlplat("output", "iris.url", "-f", str(stack), cwd=stack.parent).stdout.strip()
    assert url.startswith("http://127.0.0.1:")
    assert post(url, IRIS)[0] == 200


def test_a_state_left_without_outputs_gets_them_back_on_the_next_apply(stack: Path) -> None:
    apply(stack)
    db = sqlite3.connect(stack.parent / ".mlplat" / "quickstart.db")
    db.execute("UPDATE meta SET value = '{}' WHERE key = 'outputs'")  # what the old crash left
    db.commit()
    db.close()
    assert run_mlplat("output", "iris.url", "-f", str(stack), cwd=stack.parent, check=False).returncode == 1
    assert "No changes" in apply(stack).stdout
    assert run_mlplat("output", "iris.url", "-f", str(stack), cwd=stack.parent).stdout.startswith("http://")


# -- 6. damaged and lost state ---------------------------------------------------------------------------------
def test_a_damaged_state_file_is_a_clear_error_naming_the_backup(stack: Path) -> None:
    apply(stack)
    stack.write_text(stack.read_text().replace("weight: 80", "weight: 70").replace("weight: 20", "weight: 30"))
    apply(stack)  # a second state change: the backup holds the state as the first apply left it
    db_file = stack.parent / ".mlplat" / "quickstart.db"
    backup = db_file.with_name("quickstart.db.backup")
    assert backup.is_file()
    data = bytearray(db_file.read_bytes())
    data[2048:] = bytes(len(data) - 2048)  # zero every page after the second
    db_file.write_bytes(bytes(data))
    for args in (("preview",), ("state", "list"), ("output",), ("apply", "--yes")):
        proc = run_mlplat(*args, "-f", str(stack), cwd=stack.parent, check=False)
        assert proc.returncode == 1, (args, proc.stdout)
        assert "Traceback" not in proc.stderr
        assert f"the state file {db_file} is damaged" in proc.stderr, proc.stderr
        assert f"cp {backup} {db_file}" in proc.stderr
    shutil.copy(backup, db_file)
    listing = json.loads(run_mlplat("state", "list", "--json", "-f", str(stack), cwd=stack.parent).stdout)
    assert len(listing["resources"]) == 9  # restored: everything is recorded again


def test_an_emptied_state_file_beside_running_servers_is_refused(stack: Path) -> None:
    apply(stack)
    running = servers_under(stack.parent)
    db_file = stack.parent / ".mlplat" / "quickstart.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    db_file.write_bytes(b"")
    for args in (("apply", "--yes"), ("preview",)):
        proc = run_mlplat(*args, "-f", str(stack), cwd=stack.parent, check=False)
        assert proc.returncode == 1, proc.stdout
        assert "is empty, but this stack's working area holds" in proc.stderr
        assert "--force-new-state" in proc.stderr
    assert servers_under(stack.parent) == running  # nothing was started beside them
    forced = apply(stack, "--force-new-state")
    assert forced.returncode == 0
    assert set(servers_under(stack.parent)) == set(recorded_servers(stack))  # adopted, not doubled


# -- 7. secrets and children -----------------------------------------------------------------------------------
def test_runtime_processes_inherit_no_secret_from_the_environment(stack: Path) -> None:
    stack.write_text(stack.read_text().replace("  - name: iris\n", "  - name: iris\n    auth: key\n"
                                                                   "    api_key: ${secret:IRIS_API_KEY}\n"))
    apply(stack, env={**SECRETS, "AWS_SECRET_ACCESS_KEY": "abc123secret", "PGPASSWORD": "pw-for-the-test"})
    servers = servers_under(stack.parent)
    assert len(servers) == 3
    for pid in servers:
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        names = {entry.partition("=")[0] for entry in environ.split("\0") if entry}
        assert not names & {"IRIS_API_KEY", "MLPLAT_STATE_PASSPHRASE", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"}
        assert KEY not in environ


# -- 9. deep JSON ----------------------------------------------------------------------------------------------
def test_deeply_nested_json_is_a_400_from_router_and_model_server(stack: Path) -> None:
    apply(stack)
    url = run_mlplat("output", "iris.url", "-f", str(stack), cwd=stack.parent).stdout.strip()
    deep = b"[" * 100_000
    status, body = post(url, deep)
    assert status == 400 and "nested too deeply" in body["error"]
    status, body = post(url, b'{"instances": ' + deep)
    assert status == 400


# -- 11. what destroy leaves -----------------------------------------------------------------------------------
def test_destroy_removes_the_state_and_the_directories_it_made(stack: Path) -> None:
    before = sorted(p.name for p in stack.parent.iterdir())
    apply(stack)
    proc = run_mlplat("destroy", "-f", str(stack), "--yes", cwd=stack.parent)
    assert "removed" in proc.stdout
    assert sorted(p.name for p in stack.parent.iterdir()) == before
    assert servers_under(stack.parent) == {}


def test_destroy_keeps_a_directory_holding_something_of_the_users(stack: Path) -> None:
    apply(stack)
    notes = stack.parent / ".mlplat" / "notes.txt"
    notes.write_text("mine")
    run_mlplat("destroy", "-f", str(stack), "--yes", cwd=stack.parent)
    assert notes.read_text() == "mine"
    assert not (stack.parent / ".mlplat" / "quickstart.db").exists()
    assert not (stack.parent / ".mlplat" / "quickstart").exists()
