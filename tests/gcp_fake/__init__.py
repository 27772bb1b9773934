"""A small, faithful fake of the Google Cloud APIs the gcp target calls, on 127.0.0.1 (real HTTP, real JSON).

One server answers every service the plugin points `endpoint_url` at, by path, as Google's REST endpoints do:
Vertex AI (`aiplatform.googleapis.com/v1`), Filestore (`file.googleapis.com/v1`), Artifact Registry
(`artifactregistry.googleapis.com/v1`), Cloud Storage's JSON API (`storage.googleapis.com/storage/v1`,
`/upload/storage/v1`, `/download/storage/v1`) and the OAuth 2.0 token endpoint a service account's JWT is exchanged
at (`/token`). The real clients (google-cloud-aiplatform and friends with `transport="rest"`, google-cloud-storage,
google-auth) talk to it; every API request must carry a bearer token this server minted.

This module is the core: routing, errors in Google's shape (`{"error": {"code", "message", "status"}}`),
long-running operations that finish after `operation_polls` GETs, 429 RESOURCE_EXHAUSTED injection (`throttle`),
a call log and `reset()`. Each service lives in its own module (`vertex_serving`: endpoints, deployed
models, predictions, monitoring jobs; `vertex_models`: the Model Registry; `vertex_compute`: persistent
resources; `gcs`; `artifact_registry`; `filestore`) and registers its routes with `route`; their objects live in
`self.objects[collection][name]` as the JSON the real API returns.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from loopback_server import LoopbackServer, serve

PROJECT = "mlplat-test"
REGION = "us-central1"

#: google.rpc.Code names by HTTP status, as Google's REST errors carry them
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                409: "ALREADY_EXISTS", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                503: "UNAVAILABLE"}
#: google.rpc.Code numbers, for an operation's `error.code`
RPC_CODES = {"INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7,
             "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "INTERNAL": 13, "UNAVAILABLE": 14}


class ApiError(Exception):
    """Answered as Google's JSON error body."""

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status or STATUS_NAMES.get(code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def not_found(name: str) -> ApiError:
    return ApiError(404, f"{name} not found.")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    groups: dict[str, str]

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Invalid JSON payload received.") from None

    def update_mask(self) -> list[str]:
        mask = self.query.get("updateMask") or self.query.get("update_mask") or ""
        return [p for p in mask.split(",") if p]


@dataclass
class Response:
    status: int = 200
    body: Any = None  # a dict/list (JSON) or bytes
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["GcpFake", Request], "Response | dict[str, Any] | None"]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    action: str
    handler: Handler


@dataclass
class Operation:
    name: str
    metadata: dict[str, Any]
    finish: Callable[[], dict[str, Any]]  # applied once, when the operation completes: its `response`
    polls: int = 0
    done: bool = False
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class GcpFake:
    """The server. `route(method, pattern, action)` registers a handler; `pattern` is a regex over the path
    (named groups are passed as `request.groups`); `action` is the RPC name (CreateEndpoint, GetOperation...)
    the call log and `throttle` use — reads are the ones starting with Get or List."""

    def __init__(self, project: str = PROJECT, region: str = REGION) -> None:
        self.project, self.region = project, region
        self.routes: list[Route] = []
        self.lock = threading.RLock()
        self._ids = itertools.count(1000)
        self.objects: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.operations: dict[str, Operation] = {}
        self.calls: list[tuple[str, str]] = []  # (action, path)
        self.actions_seen: set[str] = set()
        self.operation_polls = 2
        self.tokens: set[str] = set()
        self.require_auth = True
        self._throttle: tuple[int, frozenset[str] | None] | None = None
        self._throttled: Counter[tuple[str, ...]] = Counter()
        self.server: LoopbackServer | None = None
        from gcp_fake import (
            artifact_registry,
            auth,
            filestore,
            gcs,
            vertex_compute,
            vertex_models,
            vertex_serving,
        )

        for module in (auth, vertex_serving, vertex_models, vertex_compute, gcs, artifact_registry, filestore):
            module.register(self)
        # the rest transports ask for operations under /ui/ as often as /v1/ (the first http rule that matches)
        self.route("GET", r"/(?:v1|ui)/(?P<name>projects/[^/]+/locations/[^/]+/(?:.+/)?operations/[^/:]+)",
                   "GetOperation", _get_operation)

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self) -> GcpFake:
        self.server = serve(self._dispatch, "gcp-fake")
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def reset(self) -> None:
        with self.lock:
            self.objects.clear()
            self.operations.clear()
            self.calls.clear()
            self.operation_polls = 2
            self._throttle = None
            self._throttled.clear()

    # --- registration and helpers for the service modules -------------------------------------------

    def route(self, method: str, pattern: str, action: str, handler: Handler | None = None) -> Any:
        def register(fn: Handler) -> Handler:
            self.routes.append(Route(method, re.compile(pattern + r"\Z"), action, fn))
            return fn

        return register(handler) if handler is not None else register

    def new_id(self) -> str:
        return str(next(self._ids))

    def now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def operation(self, name_prefix: str, metadata_type: str, finish: Callable[[], dict[str, Any]],
                  **metadata: Any) -> dict[str, Any]:
        """A new long-running operation `<name_prefix>/operations/<id>` that completes after `operation_polls`
        GETs; `finish()` is applied then, and its value (a dict with `@type`) becomes the operation's response.
        Returns the Operation JSON as the starting call answers it."""
        name = f"{name_prefix}/operations/{self.new_id()}"
        meta = {"@type": metadata_type, **metadata}
        op = Operation(name, meta, finish)
        self.operations[name] = op
        if self.operation_polls <= 0:
            self._complete(op)
        return _operation_json(op)

    def _complete(self, op: Operation) -> None:
        try:
            op.response = op.finish()
        except ApiError as err:
            op.error = {"code": RPC_CODES.get(err.status, 2), "message": err.message}
        op.done = True

    def edit(self, collection: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change an object out of band (the harness's console)."""
        with self.lock:
            change(self.objects[collection][name])

    # --- throttling and the call log ------------------------------------------------------------------

    @contextmanager
    def throttle(self, times: int, actions: frozenset[str] | set[str] | str | None = None) -> Iterator[None]:
        """Answer the first `times` calls of each distinct request (action, path and body) with 429
        RESOURCE_EXHAUSTED: `actions` a set of RPC names, "reads" (Get*/List*, GetOperation included), "writes"
        (the others), or None (every action)."""
        with self.lock:
            self._throttle = (times, actions if isinstance(actions, str) or actions is None
                              else frozenset(actions))
            self._throttled.clear()
        try:
            yield
        finally:
            with self.lock:
                self._throttle = None

    def _should_throttle(self, action: str, key: tuple[str, ...] = ()) -> bool:
        if self._throttle is None:
            return False
        times, actions = self._throttle
        read = action.startswith(("Get", "List"))
        if (actions == "reads" and not read) or (actions == "writes" and read):
            return False
        if isinstance(actions, frozenset) and action not in actions:
            return False
        counted = (action, *key)
        if self._throttled[counted] >= times:
            return False
        self._throttled[counted] += 1
        return True

    def throttled_count(self, action: str) -> int:
        """How many calls of `action` were answered 429 since `throttle` began."""
        return sum(n for key, n in self._throttled.items() if key[0] == action)

    def count(self, action: str) -> int:
        return sum(1 for a, _ in self.calls if a == action)

    # --- dispatch ------------------------------------------------------------------------------------------

    def _dispatch(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in http.headers.items()}
        response: Response
        try:
            route, groups = self._match(http.command, path)
            request = Request(http.command, path, query, headers, body, groups)
            with self.lock:
                self.calls.append((route.action, path))
                self.actions_seen.add(route.action)
                if route.action != "Token":
                    self._authorize(headers)
                # each distinct request (path, JSON body) is refused `times` times: its retries then pass (a
                # multipart upload's body differs per attempt, by its boundary: counted by its path alone)
                json_body = headers.get("content-type", "").startswith("application/json")
                if self._should_throttle(route.action, (path, hashlib.sha256(body if json_body else b"").hexdigest())):
                    raise ApiError(429, f"Quota exceeded for quota metric '{route.action} requests' and limit "
                                        f"'{route.action} requests per minute per region' of service "
                                        f"'aiplatform.googleapis.com' for consumer 'project_number:{self.project}'.")
                answer = route.handler(self, request)
            response = answer if isinstance(answer, Response) else Response(200, answer if answer is not None else {})
        except ApiError as err:
            response = Response(err.code, err.body())
        except Exception as err:  # a bug in the fake: say so in Google's shape, not as a dropped connection
            response = Response(500, ApiError(500, f"fake server error: {type(err).__name__}: {err}").body())
        self._write(http, response)

    def _match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self.routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method != method:
                allowed = True
                continue
            return route, {k: v for k, v in found.groupdict().items() if v is not None}
        if allowed:
            raise ApiError(405, f"Method {method} not allowed on {path}", "INVALID_ARGUMENT")
        raise ApiError(404, f"The requested URL {path} was not found on this server.")

    def _authorize(self, headers: dict[str, str]) -> None:
        if not self.require_auth:
            return
        from gcp_fake.auth import authorized

        header = headers.get("authorization", "")
        if not header.startswith("Bearer ") or not authorized(self, header[7:]):
            raise ApiError(401, "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                                "login cookie or other valid authentication credential.")

    @staticmethod
    def _write(http: BaseHTTPRequestHandler, response: Response) -> None:
        if isinstance(response.body, bytes):
            data, ctype = response.body, response.headers.get("Content-Type", "application/octet-stream")
        else:
            data, ctype = json.dumps(response.body).encode(), "application/json; charset=UTF-8"
        http.send_response(response.status)
        http.send_header("Content-Type", ctype)
        http.send_header("Content-Length", str(len(data)))
        for key, value in response.headers.items():
            if key.lower() != "content-type":
                http.send_header(key, value)
        http.end_headers()
        http.wfile.write(data)


def _operation_json(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"name": op.name, "metadata": op.metadata}
    if op.done:
        out["done"] = True
        if op.error is not None:
            out["error"] = op.error
        elif op.response is not None:
            out["response"] = op.response
    return out


def _get_operation(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    op = fake.operations.get(name)
    if op is None:
        raise not_found(f"Operation {name}")
    if not op.done:
        op.polls += 1
        if op.polls >= fake.operation_polls:
            fake._complete(op)
    return _operation_json(op)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def started_server() -> GcpFake:
    return GcpFake().start()
