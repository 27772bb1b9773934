"""Model server: serves one ``mlplat-linear/v1`` artifact over HTTP.

    python -m mlplat_plugins.local.runtime.model_server --artifact PATH --runtime-file FILE
        [--model-id iris:1] [--framework mlplat-linear] [--host 127.0.0.1] [--port 0]
        [--internal-token-file FILE] [--quiet]

Endpoints:
    POST /invocations, POST /v1/predict   {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}
        -> 200 {"model_id": "iris:1", "predictions": [{"label": ..., "probabilities": {...}}, ...]}
        -> 400 {"error": ...} on bad JSON or shape
    GET /-/healthz   -> {"status": "ok", "model_id": ..., "pid": ...} (supervised: + "server_pid", "restarts")
    GET /-/stats     -> request counters (used by tests and to verify shadow mirroring)
    GET /metrics     -> Prometheus text (metrics.py): mlplat_model_requests_total{model,code} and
                        mlplat_model_request_duration_seconds{model} (every prediction request, whatever its
                        answer), mlplat_model_instances_total{model} (instances answered with 200), the process'
                        CPU/memory/start time and the GPUs (mlplat_gpu_available 0 without NVML)
Every response carries ``X-Mlplat-Model``. Runtime-file and signal handling: see ``processes``.

With ``--internal-token-file`` every request but ``/-/healthz`` must carry the token in ``X-Mlplat-Internal``
(403 otherwise): the router in front holds it, so an endpoint's ``auth: key`` cannot be bypassed by calling
the model server directly.

Supervised (how the local target runs it: ``supervisor.py`` starts it with these, instead of ``--runtime-file``,
``--host`` and ``--port``): ``--listen-fd N`` serves on the supervisor's inherited listening socket;
``--supervisor-pid PID`` writes no runtime file (the supervisor's names it), answers healthz with PID as
``pid`` (its own as ``server_pid``, and ``--restarts N`` as ``restarts``) and exits when PID dies;
``--ready-fd N`` gets one JSON line ``{"model_id": ..., "pid": ...}`` once serving; ``--supervisor-runtime-file``
is the supervisor's runtime file (read for ``MLPLAT_FAIL_UNDER`` only).

Failure tests: with ``MLPLAT_FAIL_UNDER=DIR`` in its environment, a server whose runtime file lies under DIR
answers every prediction with 500 (how a migration test makes a destination unhealthy); unset in normal use.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import formats, metrics
from . import model as model_format
from .processes import (
    INTERNAL_HEADER,
    BaseHandler,
    HTTPError,
    RuntimeServer,
    block_signals,
    exit_with_parent,
    read_token,
    serve,
)

PREDICT_PATHS = ("/invocations", "/v1/predict")


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0  # prediction requests, including rejected ones
        self.instances = 0
        self.errors = 0

    def record(self, instances: int, error: bool) -> None:
        with self._lock:
            self.requests += 1
            self.instances += instances
            self.errors += error

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "instances": self.instances, "errors": self.errors}


class Metrics:
    """What /metrics shows (names: metrics.py)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.registry = metrics.Registry()
        self.requests = self.registry.counter(
            "mlplat_model_requests_total", "Prediction requests answered, by status code.", ("model", "code"))
        self.duration = self.registry.histogram(
            "mlplat_model_request_duration_seconds", "Time to answer a prediction request.", ("model",))
        self.instances = self.registry.counter(
            "mlplat_model_instances_total", "Instances predicted (in 200 answers).", ("model",))
        self.registry.collector(metrics.process_lines)
        self.registry.collector(metrics.Gpus().lines)

    def record(self, code: int, seconds: float, instances: int) -> None:
        self.requests.inc(model=self.model_id, code=str(code))
        self.duration.observe(seconds, model=self.model_id)
        if code == 200:
            self.instances.inc(instances, model=self.model_id)


class ModelServer(RuntimeServer):
    def __init__(
        self, address: tuple[str, int], model: formats.Predictor, model_id: str, quiet: bool,
        internal_token: str | None = None, *, listen_socket: socket.socket | None = None,
        supervisor_pid: int | None = None, restarts: int = 0,
    ) -> None:
        self.model = model
        self.model_id = model_id
        self.internal_token = internal_token
        self.stats = Stats()
        self.metrics = Metrics(model_id)
        self.started = time.time()
        self.failing = False  # MLPLAT_FAIL_UNDER (failure tests)
        self.supervisor_pid = supervisor_pid
        self.restarts = restarts
        super().__init__(address, ModelHandler, component=f"model_server[{model_id}]", access_log=not quiet,
                         listen_socket=listen_socket)

    def health(self) -> dict[str, Any]:
        """The healthz body: under a supervisor, its pid is ``pid`` (what the runtime file names)."""
        status: dict[str, Any] = {"status": "ok", "model_id": self.model_id, "pid": os.getpid()}
        if self.supervisor_pid is not None:
            status.update(pid=self.supervisor_pid, server_pid=os.getpid(), restarts=self.restarts)
        return status


class ModelHandler(BaseHandler):
    server: ModelServer

    def default_headers(self) -> Iterable[tuple[str, str]]:
        return (("X-Mlplat-Model", self.server.model_id),)

    def _require(self, method: str) -> None:
        if self.command != method:
            raise HTTPError(405, f"{self.route_path} only supports {method}", [("Allow", method)])

    def handle_request(self) -> None:
        path = self.route_path
        token = self.server.internal_token
        if path in PREDICT_PATHS:
            self._measured(token)
            return
        self._authorize(token, path)
        if path == "/-/healthz":
            self._require("GET")
            self.send_json(200, self.server.health())
        elif path == "/-/stats":
            self._require("GET")
            stats = self.server.stats.snapshot()
            self.send_json(200, {"model_id": self.server.model_id, "started": self.server.started, **stats})
        elif path == "/metrics":
            self._require("GET")
            self.send_bytes(200, self.server.metrics.registry.render(), content_type=metrics.CONTENT_TYPE)
        else:
            raise HTTPError(404, f"no route {path}")

    def _authorize(self, token: str | None, path: str) -> None:
        if token and path != "/-/healthz":
            presented = self.headers.get(INTERNAL_HEADER) or ""
            if not hmac.compare_digest(presented.encode(), token.encode()):
                raise HTTPError(403, "this model server answers only its endpoint's router")

    def _measured(self, token: str | None) -> None:
        """A prediction request, counted in /metrics with the status it is answered with."""
        start = time.perf_counter()
        self._instances = 0
        code = 500  # an unexpected exception: _dispatch answers 500
        try:
            self._authorize(token, self.route_path)
            self._require("POST")
            self._predict()
            code = 200
        except HTTPError as exc:
            code = exc.status
            raise
        except (ConnectionError, TimeoutError):
            code = 0  # the client went away: nothing was answered, nothing is counted
            raise
        finally:
            if code:
                self.server.metrics.record(code, time.perf_counter() - start, self._instances)

    def _predict(self) -> None:
        count = 0
        try:
            if self.server.failing:
                raise HTTPError(500, "failing on purpose (MLPLAT_FAIL_UNDER)")
            body = self.read_body()
            try:
                doc: Any = model_format.loads(body)
            except ValueError as exc:
                raise HTTPError(400, f"invalid JSON body: {exc}") from None
            if not isinstance(doc, dict) or "instances" not in doc:
                raise HTTPError(400, 'body must be a JSON object {"instances": [[...], ...]}')
            instances = doc["instances"]
            count = len(instances) if isinstance(instances, list) else 0
            try:
                predictions = self.server.model.predict(instances)
            except ValueError as exc:
                raise HTTPError(400, str(exc)) from None
        except HTTPError:
            self.server.stats.record(count, error=True)
            raise
        self.server.stats.record(count, error=False)
        self._instances = count
        self.send_json(200, {"model_id": self.server.model_id, "predictions": predictions})


def main(argv: list[str] | None = None) -> int:
    block_signals()  # before any thread exists, so all threads inherit the mask
    parser = argparse.ArgumentParser(prog="model_server", description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True, type=Path, help="mlplat-linear/v1 JSON file")
    parser.add_argument("--model-id", help="identifier reported to clients (default: name:version)")
    parser.add_argument("--framework", default="mlplat-linear", help="the artifact's format (formats.FORMATS)")
    parser.add_argument("--runtime-file", type=Path, help="where to write the runtime file (not supervised)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--internal-token-file", type=Path, help="answer only requests carrying this token")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    supervised = parser.add_argument_group("supervised (supervisor.py)")
    supervised.add_argument("--listen-fd", type=int, help="serve on this inherited listening socket")
    supervised.add_argument("--supervisor-pid", type=int, help="report it as pid, write no runtime file, exit "
                                                                "when it dies")
    supervised.add_argument("--supervisor-runtime-file", type=Path, help="the supervisor's (MLPLAT_FAIL_UNDER)")
    supervised.add_argument("--ready-fd", type=int, help="write a JSON line here once serving")
    supervised.add_argument("--restarts", type=int, default=0, help="times the supervisor restarted the server")
    args = parser.parse_args(argv)
    if args.supervisor_pid is None and args.runtime_file is None:
        parser.error("--runtime-file is required (unless supervised: --supervisor-pid)")
    if args.supervisor_pid is not None:
        exit_with_parent(args.supervisor_pid)  # before the model loads: a supervisor killed meanwhile takes us too
    try:
        listener = socket.socket(fileno=args.listen_fd) if args.listen_fd is not None else None
        model = formats.load(args.artifact, args.framework)
        model_id = args.model_id or model.model_id or args.artifact.name
        token = read_token(args.internal_token_file) if args.internal_token_file else None
        server = ModelServer((args.host, args.port), model, model_id, args.quiet, token, listen_socket=listener,
                             supervisor_pid=args.supervisor_pid, restarts=args.restarts)
    except (OSError, ValueError) as exc:
        print(f"model_server: {exc}", file=sys.stderr)
        return 2
    fail_under = os.environ.get("MLPLAT_FAIL_UNDER")
    where = args.runtime_file or args.supervisor_runtime_file
    server.failing = bool(fail_under) and where is not None and where.resolve().is_relative_to(
        Path(fail_under).resolve())
    info = {"kind": "model_server", "model_id": model_id, "artifact": str(args.artifact.resolve())}
    runtime_file = None if args.supervisor_pid is not None else args.runtime_file

    def ready() -> None:
        if args.ready_fd is None:
            return
        try:
            with os.fdopen(args.ready_fd, "w", encoding="utf-8") as pipe:
                pipe.write(json.dumps({"model_id": model_id, "pid": os.getpid()}) + "\n")
        except OSError:  # the supervisor is gone: exit_with_parent stops us
            pass

    return serve(server, runtime_file, info, on_ready=ready)


if __name__ == "__main__":
    sys.exit(main())
