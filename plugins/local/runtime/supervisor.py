"""Supervisor of a model server: one ``model_server`` process at a time on a socket that never changes, started
again whenever it dies. What the local target's ``local.model_server`` runs (serving.py).

    python -m mlplat_plugins.local.runtime.supervisor --artifact PATH --runtime-file FILE
        [--model-id iris:1] [--framework mlplat-linear] [--host 127.0.0.1] [--port 0]
        [--internal-token-file FILE] [--quiet]

The model server's own options. The supervisor binds ``--host``/``--port`` itself and runs
``python -m mlplat_plugins.local.runtime.model_server`` as its child with the listening socket inherited
(``--listen-fd``; the other options flow through, see model_server's "Supervised"). So the port never changes,
and a connection made while the server restarts waits in the socket's backlog instead of being refused.

Runtime file (the ``processes`` protocol): written by the supervisor, with its own pid, once the first server
answers — ``{"pid", "port", "host", "started", "kind": "model_server", "model_id", "artifact"}``, the keys the
model server writes when unsupervised. The server writes none and answers ``/-/healthz`` with the supervisor's
pid as ``pid`` (its own as ``server_pid``, and ``restarts``): spawn, find_running, stop, reload and import see
one process whose pid does not change when the server is restarted.

Restarts: a server that exits unless the supervisor is stopping is started again after a backoff: 0.1 s,
doubled at each exit up to 5 s, back to 0.1 s when the server that exited had run 30 s. Each exit (its status,
how long it ran) and each restart (the count, the delay) is logged, in server.log; ``restarts`` in the healthz
counts them.

Startup: if the first server exits before it serves (a bad artifact, a format whose runtime is missing), the
supervisor exits with its code (128 + N for signal N), so spawn reports the failure with the log tail.

Signals: SIGTERM/SIGINT are forwarded to the server, which stops accepting and drains; once it has exited (or
been killed after 15 s) the supervisor removes its runtime file and exits 0. SIGHUP is forwarded (once the server
is serving). A SIGKILLed supervisor takes its server down with it (SIGKILL, ``processes.exit_with_parent``:
PR_SET_PDEATHSIG on Linux and a watchdog on its parent pid), so nothing is left serving on the port: what
killing an unsupervised server did.

Stdlib only, POSIX only.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .processes import RuntimeServer, read_runtime, write_json_atomic

MODEL_SERVER = "mlplat_plugins.local.runtime.model_server"
#: seconds: the first restart delay, the most it grows to, how long a server must have run for it to start over
BACKOFF_MIN, BACKOFF_MAX, BACKOFF_RESET = 0.1, 5.0, 30.0
#: seconds a stopping server may take to drain (its own limit: 10 s) before it is killed
STOP_TIMEOUT = 15.0
_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)


class Backoff:
    """Delay before each restart: `low`, doubled per exit up to `high`; `low` again after a run of `reset_after`."""

    def __init__(self, low: float = BACKOFF_MIN, high: float = BACKOFF_MAX, reset_after: float = BACKOFF_RESET) -> None:
        self.low, self.high, self.reset_after = low, high, reset_after
        self._next = low

    def delay(self, ran_for: float) -> float:
        """The delay before starting again a server that exited after running `ran_for` seconds."""
        if ran_for >= self.reset_after:
            self._next = self.low
        delay = self._next
        self._next = min(self._next * 2, self.high)
        return delay


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket as RuntimeServer binds one (same family choice, SO_REUSEADDR, backlog)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(RuntimeServer.request_queue_size)
    except OSError:
        sock.close()
        raise
    return sock


class Supervisor:
    def __init__(self, args: argparse.Namespace, listener: socket.socket) -> None:
        self.args = args
        self.listener: socket.socket | None = listener
        self.host, self.port = listener.getsockname()[:2]
        self.model_id: str = args.model_id or args.artifact.name
        self.child: subprocess.Popen[bytes] | None = None
        self.child_started = 0.0
        self.child_ready = False
        self.ready_pipe: int | None = None  # read end of the running server's readiness pipe
        self.restart_at: float | None = None  # monotonic time of the next start, while no server runs
        self.serving = False  # a server has answered: the runtime file is written, exits are restarted
        self.restarts = 0
        self.backoff = Backoff()
        self.signals: list[int] = []
        self.selector = selectors.DefaultSelector()
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ)

    # -- logging -------------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        sys.stderr.write(f"{stamp} supervisor[{self.model_id}] {message}\n")
        sys.stderr.flush()

    # -- signals -------------------------------------------------------------------------------------------
    def install_signals(self) -> None:
        """Handlers only record the signal; the wakeup fd makes the selector return (PEP 475 would otherwise
        resume the select after the handler)."""
        for signum in _HANDLED:
            signal.signal(signum, self._on_signal)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self.signals.append(signum)

    # -- the server ----------------------------------------------------------------------------------------
    def command(self, listen_fd: int, ready_fd: int) -> list[str]:
        a = self.args
        cmd = [sys.executable, "-m", MODEL_SERVER, "--artifact", str(a.artifact), "--framework", a.framework,
               "--listen-fd", str(listen_fd), "--ready-fd", str(ready_fd), "--supervisor-pid", str(os.getpid()),
               "--supervisor-runtime-file", str(a.runtime_file), "--restarts", str(self.restarts)]
        if a.model_id:
            cmd += ["--model-id", a.model_id]
        if a.internal_token_file:
            cmd += ["--internal-token-file", str(a.internal_token_file)]
        if a.quiet:
            cmd.append("--quiet")
        return cmd

    def start_child(self) -> None:
        assert self.listener is not None
        read_end, write_end = os.pipe()
        listen_fd = self.listener.fileno()
        try:
            # stdout/stderr inherited: the server logs into server.log like the supervisor
            self.child = subprocess.Popen(self.command(listen_fd, write_end), stdin=subprocess.DEVNULL,
                                          pass_fds=(listen_fd, write_end), close_fds=True)
        except OSError:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        self.child_started = time.monotonic()
        self.child_ready = False
        self.restart_at = None
        self.ready_pipe = read_end
        self.selector.register(read_end, selectors.EVENT_READ)

    def _close_ready_pipe(self) -> None:
        if self.ready_pipe is not None:
            self.selector.unregister(self.ready_pipe)
            os.close(self.ready_pipe)
            self.ready_pipe = None

    def on_ready_pipe(self) -> None:
        """The server's readiness line (or EOF: it exited before serving; its exit is handled by poll)."""
        assert self.ready_pipe is not None and self.child is not None
        try:
            data = os.read(self.ready_pipe, 4096)
        except OSError:
            data = b""
        self._close_ready_pipe()
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        self.child_ready = True
        if isinstance(message.get("model_id"), str):
            self.model_id = message["model_id"]
        if self.serving:
            self.log(f"model server restarted (pid {self.child.pid}, restart {self.restarts})")
            return
        self.serving = True
        write_json_atomic(self.args.runtime_file, {
            "pid": os.getpid(), "port": self.port, "host": self.host, "started": time.time(),
            "kind": "model_server", "model_id": self.model_id, "artifact": str(self.args.artifact.resolve()),
        })
        self.log(f"serving on {self.host}:{self.port} (supervisor pid {os.getpid()}, server pid {self.child.pid})")

    def on_child_exit(self, code: int) -> int | None:
        """The server exited by itself: schedule its restart, or (never served) the supervisor's exit code."""
        assert self.child is not None
        pid, ran_for = self.child.pid, time.monotonic() - self.child_started
        self.child = None
        self._close_ready_pipe()
        if not self.serving:
            self.log(f"model server (pid {pid}) exited during startup ({describe_exit(code)}); giving up")
            return code if code > 0 else (128 - code if code < 0 else 1)
        delay = self.backoff.delay(ran_for)
        self.restarts += 1
        self.restart_at = time.monotonic() + delay
        self.log(f"model server (pid {pid}) exited ({describe_exit(code)}) after {ran_for:.1f}s; "
                 f"restart {self.restarts} in {delay:g}s")
        return None

    # -- stopping ------------------------------------------------------------------------------------------
    def stop(self, signum: int) -> int:
        self.log(f"received {signal.Signals(signum).name}, stopping")
        if self.listener is not None:  # the server holds its own copy until it stops accepting
            self.listener.close()
            self.listener = None
        child = self.child
        if child is not None:
            if child.poll() is None:
                try:
                    child.send_signal(signal.SIGTERM)
                    child.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.log(f"model server (pid {child.pid}) still running after {STOP_TIMEOUT:g}s, killing it")
                    child.kill()
                    child.wait()
            self.log(f"model server (pid {child.pid}) stopped ({describe_exit(child.returncode)})")
        current = read_runtime(self.args.runtime_file)
        if current is not None and current.pid == os.getpid():
            self.args.runtime_file.unlink(missing_ok=True)
        self.log("stopped")
        return 0

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self) -> int:
        self.install_signals()
        self.start_child()
        while True:
            timeout = 1.0  # also a safety net: the child is polled at least once a second
            if self.restart_at is not None:
                timeout = max(0.0, min(timeout, self.restart_at - time.monotonic()))
            for key, _ in self.selector.select(timeout):
                if key.fd == self._wakeup_r:
                    while True:
                        try:
                            if not os.read(self._wakeup_r, 512):
                                break
                        except BlockingIOError:
                            break
                elif key.fd == self.ready_pipe:
                    self.on_ready_pipe()
            while self.signals:
                signum = self.signals.pop(0)
                if signum in (signal.SIGTERM, signal.SIGINT):
                    return self.stop(signum)
                if signum == signal.SIGHUP and self.child is not None and self.child_ready:
                    self.child.send_signal(signal.SIGHUP)  # before it is ready, SIGHUP's default would kill it
            if self.child is not None:
                code = self.child.poll()
                if code is not None:
                    exit_code = self.on_child_exit(code)
                    if exit_code is not None:
                        return exit_code
            if self.child is None and self.restart_at is not None and time.monotonic() >= self.restart_at:
                try:
                    self.start_child()
                except OSError as exc:  # cannot even fork: try again later
                    self.restarts += 1
                    delay = self.backoff.delay(0.0)
                    self.restart_at = time.monotonic() + delay
                    self.log(f"cannot start the model server: {exc}; restart {self.restarts} in {delay:g}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True, type=Path)
    parser.add_argument("--model-id")
    parser.add_argument("--framework", default="mlplat-linear")
    parser.add_argument("--runtime-file", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--internal-token-file", type=Path)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        listener = bind(args.host, args.port)
    except OSError as exc:
        print(f"supervisor: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return Supervisor(args, listener).run()


if __name__ == "__main__":
    sys.exit(main())
