"""Two processes, one stack: exactly one applies; the other fails fast naming the holder, or waits with
--lock-timeout; a holder killed with -9 on another host is taken over once its lease expires.

A lease expires when a reader has watched the lock's heartbeat stay unchanged for longer than the lease on its
own monotonic clock, not when the holder's wall clock (written in the heartbeat) and the reader's disagree.

No test here races an apply's duration against the startup of another CLI process (slow on a loaded CI
machine): a holder is parked mid-apply by a test plugin until the test releases it, and an expired lease is
made by ageing the dead holder's heartbeat, not by sleeping through it; the in-process lease tests run on fake
clocks."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from provisioner.errors import LockHeld
from provisioner.state import open_state
from provisioner.state.base import LockInfo, StateBackend

from conftest import run_mlplat
from state_backends import FACTORIES, BackendFactory

STACK = """\
apiVersion: mlplat/v1
metadata: {{name: {name}}}
target: sim
targets:
  sim: {{store: cloud, latency_ms: {latency}, tagged_ids: true}}
storage:
{volumes}
"""


def write_stack(directory: Path, name: str = "locky", latency: int = 300, volumes: int = 6) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stack = directory / "stack.yaml"
    stack.write_text(STACK.format(name=name, latency=latency,
                                  volumes="\n".join(f"  - {{name: v{i}}}" for i in range(volumes))))
    return stack


def start_apply(stack: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "provisioner.cli", "apply", "--yes", "-f", str(stack), *extra],
                            cwd=stack.parent, env={**os.environ, "NO_COLOR": "1", **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


GATE_PLUGIN = """\
\"\"\"Test plugin: parks the apply after its first step (the lock held, heartbeats going) until released.\"\"\"
import os
import time
from pathlib import Path

from provisioner.plugins import hookimpl

GATE = Path(os.environ["MLPLAT_TEST_GATE"])
parked = []


@hookimpl
def mlplat_on_event(event):
    if event.kind != "step-done" or parked:
        return
    parked.append(event.address)
    (GATE / "parked").write_text(event.address)
    deadline = time.monotonic() + 120
    while not (GATE / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
"""


class Gate:
    """Parks an apply started with `env` after its first step until `release()` (bounded: 120 s)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory / "gate"
        self.dir.mkdir()
        (self.dir / "mlplat_test_gate.py").write_text(GATE_PLUGIN)
        self.env = {"MLPLAT_PLUGINS": "mlplat_test_gate", "MLPLAT_TEST_GATE": str(self.dir),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(self.dir), os.environ.get("PYTHONPATH")]))}

    def wait_parked(self, proc: subprocess.Popen[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (self.dir / "parked").exists():
            if proc.poll() is not None:
                raise AssertionError(f"the apply ended ({proc.returncode}) before its first step was done:\n"
                                     f"{proc.stderr.read() if proc.stderr else ''}")
            assert time.monotonic() < deadline, "the apply never finished its first step"
            time.sleep(0.02)

    def release(self) -> None:
        (self.dir / "release").touch()


def read_stderr_until(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> list[str]:
    """Block until `proc` writes a line containing `text` to stderr; returns the lines, which keep arriving."""
    lines: list[str] = []
    seen = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if text in line:
                seen.set()
        seen.set()  # end of output

    threading.Thread(target=pump, daemon=True).start()
    assert seen.wait(timeout) and any(text in line for line in lines), "".join(lines)
    return lines


def age_lock(stack: Path, name: str) -> None:
    """As if the (dead) holder's lease ran out: its last heartbeat moved a lease and a minute into the past, its
    lease shortened to 2 s (the next apply still watches one lease for a heartbeat before taking over)."""
    state = open_state(name, stack.parent)
    lock = state.read_lock()
    assert lock is not None, "the lock is gone"
    lock.heartbeat -= lock.lease + 60
    lock.lease = 2
    assert state.write_lock(lock, replacing=lock.id)
    state.close()


def objects(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (directory / "cloud" / "objects").glob("*.json")]


def test_a_second_apply_fails_fast_naming_the_holder_then_waits_with_lock_timeout(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, latency=20, volumes=8)
    gate = Gate(tmp_path)
    first = start_apply(stack, "--parallelism", "1", env=gate.env)
    try:
        gate.wait_parked(first)  # one volume made, the lock held until the gate opens
        # the holder stays parked until released: the second apply returning at all shows it did not wait
        second = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False)
        assert second.returncode == 1
        assert f"locked by {pwd.getpwuid(os.getuid()).pw_name}@" in second.stderr  # $USER may be unset
        assert f"pid {first.pid}, apply" in second.stderr and "Traceback" not in second.stderr
        waiting = start_apply(stack, "--lock-timeout", "60")
        lines = read_stderr_until(waiting, "waiting up to 60s for the lock")
        gate.release()  # only now: the third apply is waiting
        assert waiting.wait(timeout=60) == 0, "".join(lines)
    finally:
        gate.release()
        assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    assert len(objects(tmp_path)) == 8  # the waiting apply found nothing left to do


def test_a_holder_killed_on_another_host_is_taken_over_when_its_lease_expires(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, latency=20)
    # mid-apply, SIGKILL: the second volume made, its done record not written, the lock left behind (60 s lease)
    first = start_apply(stack, "--parallelism", "1",
                        env={"MLPLAT_HOSTNAME": "ci-runner-7", "MLPLAT_CRASH_AT": "before-done:2"})
    assert first.wait(timeout=60) == -9, first.stderr.read() if first.stderr else ""
    refused = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "ci-runner-7" in refused.stderr  # another host: its pid proves nothing
    age_lock(stack, "locky")  # the lease runs out (no heartbeat comes from a killed holder)
    resumed = run_mlplat("apply", "--yes", "-f", str(stack), "--lock-timeout", "30", cwd=tmp_path)
    assert "took over the lock of" in resumed.stderr and "@ci-runner-7" in resumed.stderr
    assert "lease expired" in resumed.stderr
    found = objects(tmp_path)
    assert len(found) == 6 and len({o["address"] for o in found}) == 6  # no duplicate, no orphan
    assert run_mlplat("preview", "--detailed-exitcode", "-f", str(stack), cwd=tmp_path, check=False).returncode == 0


def test_a_live_holder_keeps_renewing_its_lease(tmp_path: Path) -> None:
    """An apply longer than its lease is never taken over: its heartbeat renews the lease."""
    stack = write_stack(tmp_path, latency=20, volumes=8)
    lease = {"MLPLAT_LOCK_LEASE": "3", "MLPLAT_HOSTNAME": "elsewhere"}  # renewed every second
    gate = Gate(tmp_path)
    first = start_apply(stack, "--parallelism", "1", env={**lease, **gate.env})
    try:
        gate.wait_parked(first)  # parked mid-apply for as long as the test needs: longer than its lease
        state = open_state("locky", stack.parent)
        deadline = time.monotonic() + 30
        while True:  # until a heartbeat has carried the lock past the end of the lease it was taken with
            lock = state.read_lock()
            assert lock is not None and lock.pid == first.pid
            if lock.heartbeat > lock.started + lock.lease:
                break
            assert time.monotonic() < deadline, f"no heartbeat renewed the lease: {lock}"
            time.sleep(0.05)
        state.close()
        other = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False, env=lease)
        assert other.returncode == 1 and "locked by" in other.stderr, other.stderr
    finally:
        gate.release()
        assert first.wait(timeout=60) == 0
    assert len(objects(tmp_path)) == 8


# -- lease expiry on fake clocks: the holder's wall clock and the reader's disagree ---------------------------

LEASE = 5.0


@pytest.fixture(params=sorted(FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    return FACTORIES[request.param](request, tmp_path)


class Clocks:
    """The reader's clocks, moved only by its own waits (`StateBackend.sleep`): its wall clock runs `skew` seconds
    ahead of the holder's; while `holder` is set, the holder renews every third of its lease, writing heartbeats
    from its own (true) wall clock."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, skew: float) -> None:
        self.wall = 1_700_000_000.0  # the holder's
        self.watched = 0.0  # the reader's monotonic clock
        self.renew: Callable[[], None] | None = None
        monkeypatch.setattr(StateBackend, "clock", staticmethod(lambda: self.wall + skew))
        monkeypatch.setattr(StateBackend, "monotonic", staticmethod(lambda: self.watched))
        monkeypatch.setattr(StateBackend, "sleep", staticmethod(self.sleep))

    def sleep(self, seconds: float) -> None:
        self.wall += seconds
        self.watched += seconds
        if self.renew is not None:
            self.renew()

    def hold(self, state: StateBackend, host: str) -> LockInfo:
        """Take the lock as a holder on `host` (this process's pid) that renews until `renew` is cleared."""
        holder = LockInfo("holder", "apply", host=host, started=self.wall, heartbeat=self.wall, lease=LEASE)
        assert state.acquire_lock(holder) is None

        def renew() -> None:
            if self.wall - holder.heartbeat >= LEASE / 3:
                holder.heartbeat = self.wall
                assert state.write_lock(holder, replacing=holder.id)

        self.renew = renew
        return holder


@pytest.mark.parametrize("host", ["elsewhere", "this host"])
def test_a_reader_whose_clock_runs_ahead_does_not_take_over_a_renewing_holder(
        backend: BackendFactory, monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """The reader's clock 10 s ahead makes a 5 s lease look expired by the wall clock: it watches the heartbeat
    for one lease, sees it move, and leaves the lock alone, however long it may wait."""
    from provisioner.state.base import host_name

    clocks = Clocks(monkeypatch, skew=10)
    holder = clocks.hold(backend.open(), host_name() if host == "this host" else host)
    reader = backend.open()
    told: list[str] = []
    with pytest.raises(LockHeld, match="locked by"):
        reader.acquire_lock(LockInfo("reader", "apply"), waiting=lambda h: told.append(h.id))
    assert told == ["holder"] and LEASE <= clocks.watched <= LEASE + 1  # it watched one lease, not longer
    with pytest.raises(LockHeld, match="locked by"):
        reader.acquire_lock(LockInfo("reader", "apply"), timeout=60)
    lock = backend.open().read_lock()
    assert lock is not None and lock.id == "holder" and lock.heartbeat == holder.heartbeat


def test_a_holder_that_stops_renewing_is_taken_over_after_one_lease_of_watching(
        backend: BackendFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = Clocks(monkeypatch, skew=10)
    clocks.hold(backend.open(), "elsewhere")
    clocks.renew = None  # the holder crashed (or froze) right after its last heartbeat
    reader = backend.open()
    told: list[str] = []
    # a timeout shorter than the lease (the default: none): the watch still runs its lease, then takes over
    previous = reader.acquire_lock(LockInfo("reader", "apply"), waiting=lambda h: told.append(h.id))
    assert previous is not None and previous.id == "holder"
    assert told == ["holder"] and LEASE < clocks.watched <= LEASE + 1
    assert reader.took_over_because == "its lease expired (no heartbeat seen for 5s; lease 5s)"
    lock = backend.open().read_lock()
    assert lock is not None and lock.id == "reader"


def test_a_crashed_holder_whose_clock_runs_ahead_is_taken_over_by_a_waiting_reader(
        backend: BackendFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's clock 10 s ahead: its last heartbeat looks fresh by the reader's wall clock for a while. A
    reader that does not wait is refused at once; one that waits takes the lock over once it has seen no
    heartbeat for a lease."""
    clocks = Clocks(monkeypatch, skew=-10)
    clocks.hold(backend.open(), "elsewhere")
    clocks.renew = None
    reader = backend.open()
    with pytest.raises(LockHeld):
        reader.acquire_lock(LockInfo("reader", "apply"))
    assert clocks.watched == 0
    previous = reader.acquire_lock(LockInfo("reader", "apply"), timeout=30)
    assert previous is not None and previous.id == "holder" and LEASE < clocks.watched <= LEASE + 1
