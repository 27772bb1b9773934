"""Model server: serves one ``mlplat-linear/v1`` artifact over HTTP.

    python -m mlplat_plugins.local.runtime.model_server --artifact PATH --runtime-file FILE
        [--model-id iris:1] [--host 127.0.0.1] [--port 0] [--internal-token-file FILE] [--quiet]

Endpoints:
    POST /invocations, POST /v1/predict   {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}
        -> 200 {"model_id": "iris:1", "predictions": [{"label": ..., "probabilities": {...}}, ...]}
        -> 400 {"error": ...} on bad JSON or shape
    GET /-/healthz   -> {"status": "ok", "model_id": ..., "pid": ...}
    GET /-/stats     -> request counters (used by tests and to verify shadow mirroring)
Every response carries ``X-Mlplat-Model``. Runtime-file and signal handling: see ``processes``.

With ``--internal-token-file`` every request but ``/-/healthz`` must carry the token in ``X-Mlplat-Internal``
(403 otherwise): the router in front holds it, so an endpoint's ``auth: key`` cannot be bypassed by calling
the model server directly.

Failure tests: with ``MLPLAT_FAIL_UNDER=DIR`` in its environment, a server whose runtime file lies under DIR
answers every prediction with 500 (how a migration test makes a destination unhealthy); unset in normal use.
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import formats
from . import model as model_format
from .processes import INTERNAL_HEADER, BaseHandler, HTTPError, RuntimeServer, block_signals, read_token, serve

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


class ModelServer(RuntimeServer):
    def __init__(
        self, address: tuple[str, int], model: formats.Predictor, model_id: str, quiet: bool,
        internal_token: str | None = None,
    ) -> None:
        self.model = model
        self.model_id = model_id
        self.internal_token = internal_token
        self.stats = Stats()
        self.started = time.time()
        self.failing = False  # MLPLAT_FAIL_UNDER (failure tests)
        super().__init__(address, ModelHandler, component=f"model_server[{model_id}]", access_log=not quiet)


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
        if token and path != "/-/healthz":
            presented = self.headers.get(INTERNAL_HEADER) or ""
            if not hmac.compare_digest(presented.encode(), token.encode()):
                raise HTTPError(403, "this model server answers only its endpoint's router")
        if path == "/-/healthz":
            self._require("GET")
            self.send_json(200, {"status": "ok", "model_id": self.server.model_id, "pid": os.getpid()})
        elif path == "/-/stats":
            self._require("GET")
            stats = self.server.stats.snapshot()
            self.send_json(200, {"model_id": self.server.model_id, "started": self.server.started, **stats})
        elif path in PREDICT_PATHS:
            self._require("POST")
            self._predict()
        else:
            raise HTTPError(404, f"no route {path}")

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
        self.send_json(200, {"model_id": self.server.model_id, "predictions": predictions})


def main(argv: list[str] | None = None) -> int:
    block_signals()  # before any thread exists, so all threads inherit the mask
    parser = argparse.ArgumentParser(prog="model_server", description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True, type=Path, help="mlplat-linear/v1 JSON file")
    parser.add_argument("--model-id", help="identifier reported to clients (default: name:version)")
    parser.add_argument("--framework", default="mlplat-linear", help="the artifact's format (formats.FORMATS)")
    parser.add_argument("--runtime-file", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--internal-token-file", type=Path, help="answer only requests carrying this token")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = parser.parse_args(argv)
    try:
        model = formats.load(args.artifact, args.framework)
        model_id = args.model_id or model.model_id or args.artifact.name
        token = read_token(args.internal_token_file) if args.internal_token_file else None
        server = ModelServer((args.host, args.port), model, model_id, args.quiet, token)
    except (OSError, ValueError) as exc:
        print(f"model_server: {exc}", file=sys.stderr)
        return 2
    fail_under = os.environ.get("MLPLAT_FAIL_UNDER")
    server.failing = bool(fail_under) and args.runtime_file.resolve().is_relative_to(Path(fail_under).resolve())
    info = {"kind": "model_server", "model_id": model_id, "artifact": str(args.artifact.resolve())}
    return serve(server, args.runtime_file, info)


if __name__ == "__main__":
    sys.exit(main())
