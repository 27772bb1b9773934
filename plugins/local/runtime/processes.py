"""The process protocol shared by the provisioner (parent side) and the runtime servers (child side).

A runtime server binds its socket, then atomically writes a *runtime file* (JSON)::

    {"pid": 4242, "port": 50123, "host": "127.0.0.1", "started": 1700000000.0, "kind": "...", ...}

and answers ``GET /-/healthz`` with a JSON object containing its ``pid``. It serves until SIGTERM or
SIGINT, then stops accepting, drains in-flight requests and removes its runtime file. SIGHUP calls a
reload hook (the router re-reads its config). Servers run in their own session so they outlive the
CLI that started them; the parent finds them again from the runtime file (see :func:`find_running`).

A supervised server (the model server under ``supervisor.py``) keeps that contract as one process: the
supervisor binds the socket and writes the runtime file with *its* pid; the server it runs inherits the
socket (:class:`RuntimeServer` ``listen_socket``), writes no runtime file (:func:`serve` with ``None``),
reports the supervisor's pid as ``pid`` in its healthz and dies with it (:func:`exit_with_parent`). So
spawn, find_running, stop and reload address the supervisor, and a server restarted by it changes nothing
the parent sees.

Parent side: :func:`spawn`, :func:`read_runtime`, :func:`is_alive`, :func:`health`, :func:`stop`,
:func:`reload`, :func:`find_running`. Child side: :class:`RuntimeServer`, :class:`BaseHandler`,
:func:`serve`, :func:`exit_with_parent`. Stdlib only (and :mod:`provisioner.pids`), POSIX only (signals,
sessions).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.pids import pid_alive

if TYPE_CHECKING:
    import subprocess

HEALTH_PATH = "/-/healthz"
#: header carrying the stack's internal token from the router to its model servers
INTERNAL_HEADER = "X-Mlplat-Internal"

#: the only environment variables a runtime server inherits: nothing secret (API keys, the state passphrase,
#: cloud credentials) may reach a child's /proc/<pid>/environ
ENV_ALLOWED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SHELL",
    "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES", "COVERAGE_PROCESS_START",
    "MLPLAT_FAIL_UNDER",  # a failure-test hook (model_server.py), never set in normal use
})
ENV_ALLOWED_PREFIXES = ("LC_",)

# ---------------------------------------------------------------------------------------------------------
# Runtime files
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ProcessInfo:
    pid: int
    port: int
    host: str
    started: float
    meta: dict[str, Any] = field(default_factory=dict)  # the other runtime-file keys (kind, model_id, ...)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def partial_write_name(path: Path) -> Path:
    """Where :func:`write_text_atomic` writes `path`'s content before the rename (unique per thread)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def is_partial_write(name: str) -> bool:
    """A file name :func:`partial_write_name` makes: what a kill mid-write leaves behind."""
    return re.fullmatch(r"\..+\.\d+\.\d+\.tmp", name) is not None


def write_text_atomic(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Write a file so readers (and a reader after a crash or power loss) see the old or the new content,
    never a partial or empty one: temp file, fsync, rename, fsync of the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_write_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so readers see the old or the new file, never a partial one."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_token(path: Path) -> str:
    """An internal token file's content; ValueError if it is missing, unreadable or too short to be one."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the internal token file {path}: {exc}") from None
    if len(token) < 32:
        raise ValueError(f"the internal token file {path} holds no token")
    return token


def is_loopback(host: str) -> bool:
    """An address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a runtime server: the allow-listed variables of ours, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOWED or k.startswith(ENV_ALLOWED_PREFIXES)}
    return {**env, **(extra or {}), "PYTHONUNBUFFERED": "1"}


def read_runtime(runtime_file: Path) -> ProcessInfo | None:
    """Parse a runtime file; None if it is missing or malformed."""
    try:
        data = json.loads(Path(runtime_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid, port, host, started = (data.get(k) for k in ("pid", "port", "host", "started"))
    if not (isinstance(pid, int) and pid > 0 and isinstance(port, int) and 0 < port < 65536):
        return None
    if not isinstance(host, str) or not isinstance(started, (int, float)):
        return None
    meta = {k: v for k, v in data.items() if k not in ("pid", "port", "host", "started")}
    return ProcessInfo(pid=pid, port=port, host=host, started=float(started), meta=meta)


# ---------------------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------------------

# Children spawned by this process: keeping the Popen objects lets us reap them (a long-lived parent such
# as pytest would otherwise accumulate zombies) without ResourceWarnings.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _check_pid(pid: int) -> None:
    # os.kill(0 or -1, ...) would signal our own process group / every process we may signal.
    if not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"invalid pid {pid!r}")


def _reap(pid: int) -> bool:
    """True if ``pid`` was our child and has exited (it is reaped now)."""
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return False
        del _children[pid]
        return True
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (e.g. started by an earlier CLI run)
        return False
    return done == pid


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    _check_pid(pid)
    if _reap(pid):
        return False
    return pid_alive(pid)


def health(host: str, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """``GET /-/healthz``; the JSON object on HTTP 200, else None."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", HEALTH_PATH)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        data = json.loads(body)
        return data if isinstance(data, dict) else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def _log_tail(log_file: Path, offset: int, lines: int = 20) -> str:
    try:
        with open(log_file, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(cannot read {log_file}: {exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(no output)"


def spawn(
    module: str,
    args: list[str],
    *,
    runtime_file: Path,
    log_file: Path,
    timeout: float = 15.0,
    env: dict[str, str] | None = None,
) -> ProcessInfo:
    """Start ``python -m module *args`` detached (own session, output appended to ``log_file``).

    Returns once the runtime file names the new pid and its healthz answers. The child's environment is the
    allow-listed part of ours (:func:`child_environment`) plus ``env``. On early exit or timeout the process
    is killed and RuntimeError raised with the tail of its log.
    """
    import shlex
    import subprocess

    runtime_file, log_file = Path(runtime_file), Path(log_file)
    runtime_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    runtime_file.unlink(missing_ok=True)  # a stale file from a dead process must not satisfy the wait
    cmd = [sys.executable, "-m", module, *args]
    child_env = child_environment(env)
    with open(log_file, "ab") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        log.write(f"--- {stamp} starting: {shlex.join(cmd)}\n".encode())
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            start_new_session=True,
            env=child_env,
        )
    _children[proc.pid] = proc
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        code = proc.poll()
        if code is not None:
            _children.pop(proc.pid, None)
            tail = _log_tail(log_file, offset)
            raise RuntimeError(f"{module} exited with code {code} during startup; log {log_file}:\n{tail}")
        info = read_runtime(runtime_file)
        if info is not None and info.pid == proc.pid:
            status = health(info.host, info.port, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            if status is not None and status.get("pid") == proc.pid:
                return info
        if time.monotonic() >= deadline:
            stop(proc.pid)
            tail = _log_tail(log_file, offset)
            raise RuntimeError(f"{module} not healthy within {timeout:g}s; log {log_file}:\n{tail}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. No error if the process is already gone."""
    _check_pid(pid)
    if not is_alive(pid):
        _children.pop(pid, None)
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        _reap(pid)
        return
    if _wait_gone(pid, timeout):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 2.0)
    _children.pop(pid, None)


def reload(pid: int) -> None:
    """Ask a runtime server to reload its configuration (SIGHUP). ProcessLookupError if it is gone."""
    _check_pid(pid)
    os.kill(pid, signal.SIGHUP)


def find_running(runtime_file: Path, timeout: float = 2.0) -> ProcessInfo | None:
    """The process a runtime file describes, if it is alive and its healthz confirms the pid.

    The pid check guards against a recycled pid or a stale file pointing at someone else's port.
    """
    info = read_runtime(runtime_file)
    if info is None or not is_alive(info.pid):
        return None
    status = health(info.host, info.port, timeout=timeout)
    return info if status is not None and status.get("pid") == info.pid else None


# ---------------------------------------------------------------------------------------------------------
# Child side
# ---------------------------------------------------------------------------------------------------------

_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def block_signals() -> None:
    """Block the control signals in this thread and every thread started later; :func:`serve` takes
    them with ``sigwait``. Call it first thing in ``main()``, before any thread is created."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)


def exit_with_parent(parent: int, signum: int = signal.SIGKILL, interval: float = 0.5) -> None:
    """Child side of a supervised server: get ``signum`` when the process ``parent`` dies, even by SIGKILL.
    Linux: PR_SET_PDEATHSIG (immediate); everywhere, a daemon thread comparing ``os.getppid()`` every
    ``interval`` seconds (a reparented child has another parent). The default, SIGKILL, makes killing the
    supervisor what killing an unsupervised server was (``stop`` ends with SIGKILL after its timeout: nothing
    may go on serving after it). A catchable ``signum`` waits for ``sigwait`` after :func:`block_signals`."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):  # no libc to load: the watchdog alone
            import ctypes

            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, int(signum), 0, 0, 0)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signum)

    if os.getppid() != parent:  # it died before the prctl took effect
        os.kill(os.getpid(), signum)
        return
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class HTTPError(Exception):
    """Raised inside a handler to answer ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


class RuntimeServer(ThreadingHTTPServer):
    daemon_threads = True
    # Idle keep-alive connections must not block shutdown; serve() drains in-flight requests instead.
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        component: str,
        access_log: bool = True,
        listen_socket: socket.socket | None = None,
    ) -> None:
        """Binds `address`; or, given `listen_socket` (a bound, listening socket inherited from a supervisor),
        serves on that one and `address` is ignored."""
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.component = component
        self.access_log = access_log
        self.stopping = False
        self._active = 0
        self._idle = threading.Condition()
        if listen_socket is None:
            super().__init__(address, handler)
            return
        self.address_family = listen_socket.family
        super().__init__(address, handler, bind_and_activate=False)
        self.socket.close()  # the unbound one TCPServer made
        self.socket = listen_socket
        self.server_address = listen_socket.getsockname()
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can take seconds; skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # client went away: not worth a traceback
        super().handle_error(request, client_address)

    def begin_request(self) -> None:
        with self._idle:
            self._active += 1

    def end_request(self) -> None:
        with self._idle:
            self._active -= 1
            if self._active == 0:
                self._idle.notify_all()

    @property
    def active(self) -> int:
        """Requests being handled right now."""
        return self._active

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

    def log(self, message: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.component} {message}\n")


class BaseHandler(BaseHTTPRequestHandler):
    """JSON helpers, request-body reading, quiet logging. Subclasses implement :meth:`handle_request`."""

    server: RuntimeServer
    server_version = "mlplat"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive
    wbufsize = 64 * 1024  # buffered: headers and body leave in one send(), flushed by handle_one_request
    disable_nagle_algorithm = True
    timeout = 300  # seconds an idle keep-alive connection may stay open
    max_body = 16 * 1024 * 1024

    def handle_request(self) -> None:
        raise NotImplementedError

    def default_headers(self) -> Iterable[tuple[str, str]]:
        """Headers added to every response."""
        return ()

    def version_string(self) -> str:
        return self.server_version

    def _dispatch(self) -> None:
        self.server.begin_request()
        self._body_read = False
        try:
            self.handle_request()
        except HTTPError as exc:
            if not self._body_read and (
                self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers
            ):
                self.close_connection = True  # an unread body would be parsed as the next request
            self.send_json(exc.status, {"error": str(exc)}, headers=exc.headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:  # a handler bug answers 500 (traceback logged), never kills the thread
            self.server.log(f"internal error handling {self.requestline!r}:\n{traceback.format_exc()}")
            self.close_connection = True
            self.send_json(500, {"error": "internal server error"})
        finally:
            self.server.end_request()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    @property
    def route_path(self) -> str:
        return self.path.split("?", 1)[0]

    def read_body(self) -> bytes:
        self._body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise HTTPError(400, f"invalid Content-Length {raw!r}") from None
        if length > self.max_body:
            self._body_read = False
            raise HTTPError(413, f"request body larger than {self.max_body} bytes")
        data = self.rfile.read(length)
        if len(data) < length:
            raise ConnectionResetError("client closed the connection mid-body")
        return data

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise HTTPError(400, "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > self.max_body:
                self._body_read = False
                raise HTTPError(413, f"request body larger than {self.max_body} bytes")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after the chunk

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Iterable[tuple[str, str]] = (),
        content_length: int | None = None,
    ) -> None:
        """Send a whole response. ``content_length`` overrides ``len(body)`` (a proxied HEAD response)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        for name, value in (*self.default_headers(), *headers):
            self.send_header(name, value)
        if self.server.stopping or self.close_connection:
            self.send_header("Connection", "close")  # tell the client before we hang up
        self.end_headers()
        if self.command != "HEAD" and status >= 200 and status not in (204, 304):
            self.wfile.write(body)

    def send_json(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_bytes(status, json.dumps(payload, separators=(",", ":")).encode(), headers=headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """JSON instead of the stdlib HTML page (used for malformed requests and unknown methods)."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.send_json(code, {"error": message or phrase})

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.server.access_log:
            super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log(f"{self.address_string()} {format % args}")


def serve(
    server: RuntimeServer,
    runtime_file: Path | None,
    info: dict[str, Any],
    *,
    on_reload: Callable[[], None] | None = None,
    on_ready: Callable[[], None] | None = None,
    drain_timeout: float = 10.0,
) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP calls ``on_reload``. Returns the exit code.

    Once accepting, writes ``runtime_file`` (``None``: a supervised server, whose supervisor writes it) and
    calls ``on_ready``. Signals are taken synchronously with ``sigwait`` in the main thread (no async
    handlers, so no reentrancy issues); the accept loop runs in a background thread.
    """
    block_signals()
    runtime_file = Path(runtime_file) if runtime_file is not None else None
    accept = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    accept.start()
    host, port = server.server_address[:2]
    pid = os.getpid()
    if runtime_file is not None:
        write_json_atomic(runtime_file, {"pid": pid, "port": port, "host": host, "started": time.time(), **info})
    server.log(f"listening on {host}:{port} (pid {pid})")
    if on_ready is not None:
        on_ready()
    try:
        while True:
            signum = signal.sigwait(_SIGNALS)
            if signum != signal.SIGHUP:
                server.log(f"received {signal.Signals(signum).name}, shutting down")
                break
            if on_reload is None:
                continue
            try:
                on_reload()
            except Exception as exc:  # a failed reload keeps serving on the old configuration
                server.log(f"reload failed, keeping the current configuration: {exc}")
    finally:
        server.stopping = True
        server.shutdown()  # stop accepting
        server.server_close()  # close the listening socket
        if not server.wait_idle(drain_timeout):
            server.log(f"{server.active} request(s) still in flight after {drain_timeout:g}s, exiting anyway")
        current = read_runtime(runtime_file) if runtime_file is not None else None
        if current is not None and current.pid == pid and runtime_file is not None:
            runtime_file.unlink(missing_ok=True)
    server.log("stopped")
    return 0
