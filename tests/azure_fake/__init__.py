"""A small, faithful fake of the Azure APIs the azure target calls, on 127.0.0.1 (real HTTP, real JSON).

The plugin's clients (azure-ai-ml's MLClient, azure-identity, azure-storage-blob, azure-storage-file-share) keep
their real URLs (`https://management.azure.com/...`, `https://<account>.blob.core.windows.net/...`,
`https://login.microsoftonline.com/...`); the plugin's `endpoint_url` transport sends each request here with the
original host in `X-Mlplat-Original-Host`, which this server routes on together with the path.

This module is the core: routing by (host, method, path), ARM errors (`{"error": {"code", "message"}}`), ARM
long-running operations (201/202 with `Azure-AsyncOperation` and `Location`, an operation status resource that
reports InProgress then Succeeded after `operation_polls` reads of it or of the object), 429 TooManyRequests with
`Retry-After` (`throttle`), the Entra ID token endpoints msal calls, the workspace, a call log and `reset()`.
Services live in their own modules (`compute`, `storage` (datastores, file shares, blobs), `models`, `endpoints`
(online endpoints and deployments, scoring, schedules)), each registering routes; objects live in
`self.objects[collection][name]` as the JSON ARM returns.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from loopback_server import METHODS, LoopbackServer, serve

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
TENANT = "00000000-0000-0000-0000-0000000000bb"
RESOURCE_GROUP = "mlplat-rg"
WORKSPACE = "mlplat-ws"
LOCATION = "eastus"
ARM = "management.azure.com"
LOGIN = "login.microsoftonline.com"
STORAGE_ACCOUNT = "mlplatstore"
REGISTRY = "mlplatacr"
#: the workspace's ARM id; service modules build their paths under it
WORKSPACE_PATH = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/"
                  f"Microsoft.MachineLearningServices/workspaces/{WORKSPACE}")


class ApiError(Exception):
    """Answered as ARM's error body (storage services answer XML: `xml=True`)."""

    def __init__(self, status: int, code: str, message: str, *, xml: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.xml = status, code, message, xml

    def response(self) -> Response:
        if self.xml:
            body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{self.code}</Code>'
                    f"<Message>{self.message}</Message></Error>").encode()
            return Response(self.status, body, {"Content-Type": "application/xml", "x-ms-error-code": self.code})
        return Response(self.status, {"error": {"code": self.code, "message": self.message}},
                        {"x-ms-error-code": self.code})


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "ResourceNotFound", f"The Resource '{kind}/{name}' under resource group "
                                             f"'{RESOURCE_GROUP}' was not found.")


@dataclass
class Request:
    method: str
    host: str
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
            raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be "
                                                         "deserialized.") from None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list (JSON), bytes, or None (empty)
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["AzureFake", Request], "Response | dict[str, Any] | None"]


@dataclass
class Route:
    host: str  # "arm", "login", "blob", "file"
    method: str
    pattern: re.Pattern[str]
    action: str
    handler: Handler


@dataclass
class Operation:
    """An ARM asynchronous operation: `finish()` applies its effect (sets the object's provisioningState...)."""

    id: str
    finish: Callable[[], None]
    polls: int = 0
    status: str = "InProgress"
    error: dict[str, str] | None = None


class AzureFake:
    """The server. `route(host, method, pattern, action)` registers a handler; `host` is "arm", "login", "blob" or
    "file" (the storage services: `<account>.blob|file.core.windows.net`, the account in `request.groups`)."""

    def __init__(self) -> None:
        self.subscription, self.resource_group, self.workspace = SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE
        self.location, self.tenant = LOCATION, TENANT
        self.routes: list[Route] = []
        self.lock = threading.RLock()
        self._ids = itertools.count(1000)
        self.objects: dict[str, dict[str, Any]] = defaultdict(dict)
        self.operations: dict[str, Operation] = {}
        #: the operation still running for an object (its ARM id, lower case): a GET of the object advances it
        self.pending: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.actions_seen: set[str] = set()
        self.operation_polls = 2
        self.tokens: set[str] = set()
        self.client_secret = secrets.token_urlsafe(16)
        self._throttle: tuple[int, str | frozenset[str] | None] | None = None
        self._throttled: Counter[tuple[str, ...]] = Counter()
        self.server: LoopbackServer | None = None
        from azure_fake import compute, endpoints, models, storage

        self._modules = (compute, storage, models, endpoints)
        self._register_core()
        for module in self._modules:
            module.register(self)
        self._seed()

    # --- lifecycle -------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self) -> AzureFake:
        self.server = serve(self._dispatch, "azure-fake", (*METHODS, "HEAD"))
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def reset(self) -> None:
        with self.lock:
            self.objects.clear()
            self.operations.clear()
            self.pending.clear()
            self.calls.clear()
            self.operation_polls = 2
            self._throttle = None
            self._throttled.clear()
            self._seed()

    def env(self) -> dict[str, str]:
        """The environment DefaultAzureCredential reads (EnvironmentCredential: a service principal's secret)."""
        return {"AZURE_TENANT_ID": self.tenant, "AZURE_CLIENT_ID": "11111111-1111-1111-1111-111111111111",
                "AZURE_CLIENT_SECRET": self.client_secret}

    # --- helpers for the service modules ---------------------------------------------------------------------

    def route(self, host: str, method: str, pattern: str, action: str, handler: Handler | None = None) -> Any:
        def register(fn: Handler) -> Handler:
            self.routes.append(Route(host, method, re.compile(pattern + r"\Z", re.IGNORECASE), action, fn))
            return fn

        return register(handler) if handler is not None else register

    def new_id(self) -> str:
        return str(next(self._ids))

    @staticmethod
    def now() -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00", time.gmtime())

    def long_running(self, resource_id: str, finish: Callable[[], None], *, status: int = 201,
                     body: Any = None) -> Response:
        """Start an ARM asynchronous operation on `resource_id`: the answer (201 for a PUT, 202 for a DELETE)
        carries Azure-AsyncOperation and Location; `finish()` runs once it has been polled `operation_polls`
        times (through the operation status or a GET of the object)."""
        op_id = self.new_id()
        op = Operation(op_id, finish)
        self.operations[op_id] = op
        self.pending[resource_id.lower()] = op_id
        url = (f"https://{ARM}/subscriptions/{self.subscription}/providers/Microsoft.MachineLearningServices/"
               f"locations/{self.location}/mfeOperationsStatus/{op_id}?api-version=2024-04-01")
        headers = {"Azure-AsyncOperation": url, "Location": url.replace("mfeOperationsStatus", "mfeOperationResults"),
                   "Retry-After": "0"}
        if self.operation_polls <= 0:
            self._advance(op_id)
        return Response(status, body, headers)

    def advance(self, resource_id: str) -> None:
        """A read of `resource_id` (its object): one poll of the operation running on it, if any."""
        op_id = self.pending.get(resource_id.lower())
        if op_id is not None:
            self._advance(op_id)

    def _advance(self, op_id: str) -> None:
        op = self.operations[op_id]
        if op.status != "InProgress":
            return
        op.polls += 1
        if op.polls >= self.operation_polls:
            try:
                op.finish()
                op.status = "Succeeded"
            except ApiError as err:
                op.status, op.error = "Failed", {"code": err.code, "message": err.message}
            for key, value in list(self.pending.items()):
                if value == op_id:
                    del self.pending[key]

    def edit(self, collection: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        with self.lock:
            change(self.objects[collection][name])

    # --- throttling and the call log -------------------------------------------------------------------------

    @contextmanager
    def throttle(self, times: int, actions: frozenset[str] | set[str] | str | None = None) -> Iterator[None]:
        """Answer the first `times` calls of each distinct request (action, path, JSON body) with 429
        TooManyRequests and `Retry-After: 0`: `actions` a set of action names, "reads" (GET/HEAD), "writes"
        (the others) or None (all). Token requests are never throttled."""
        with self.lock:
            self._throttle = (times, actions if isinstance(actions, str) or actions is None else frozenset(actions))
            self._throttled.clear()
        try:
            yield
        finally:
            with self.lock:
                self._throttle = None

    def _should_throttle(self, action: str, method: str, key: tuple[str, ...]) -> bool:
        if self._throttle is None or action.startswith("Login."):
            return False
        times, actions = self._throttle
        read = method in ("GET", "HEAD")
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
        return sum(n for key, n in self._throttled.items() if key[0] == action)

    def count(self, action: str) -> int:
        return sum(1 for a, _ in self.calls if a == action)

    # --- core routes: login, the workspace, operation status -------------------------------------------------

    def _seed(self) -> None:
        """What every workspace has: itself, and what each service module seeds (`seed(fake)`: the default
        datastores and their storage)."""
        for module in getattr(self, "_modules", ()):
            seed = getattr(module, "seed", None)
            if seed is not None:
                seed(self)
        self.objects["workspaces"][WORKSPACE.lower()] = {
            "id": WORKSPACE_PATH, "name": WORKSPACE, "type": "Microsoft.MachineLearningServices/workspaces",
            "location": self.location, "tags": {}, "kind": "Default",
            "identity": {"type": "SystemAssigned", "principalId": "22222222-2222-2222-2222-222222222222",
                         "tenantId": self.tenant},
            "properties": {
                "friendlyName": WORKSPACE, "provisioningState": "Succeeded",
                "storageAccount": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/"
                                  f"Microsoft.Storage/storageAccounts/{STORAGE_ACCOUNT}",
                "containerRegistry": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/"
                                     f"providers/Microsoft.ContainerRegistry/registries/{REGISTRY}",
                "discoveryUrl": f"https://{self.location}.api.azureml.ms/discovery",
                "workspaceId": "33333333-3333-3333-3333-333333333333",
                "mlFlowTrackingUri": f"azureml://{self.location}.api.azureml.ms/mlflow/v1.0{WORKSPACE_PATH}"}}

    def _register_core(self) -> None:
        tenant = r"/(?P<tenant>[^/]+)"
        self.route("login", "GET", r"/common/discovery/instance", "Login.InstanceDiscovery", _instance_discovery)
        self.route("login", "GET", tenant + r"/v2\.0/\.well-known/openid-configuration", "Login.OpenIdConfiguration",
                   _openid_configuration)
        self.route("login", "POST", tenant + r"/oauth2/v2\.0/token", "Login.Token", _token)
        self.route("arm", "GET", WORKSPACE_PATH, "Workspaces.Get", _get_workspace)
        self.route("arm", "GET", r"/subscriptions/[^/]+/providers/Microsoft\.MachineLearningServices/locations/[^/]+/"
                   r"mfeOperations?(?P<kind>Status|Result)s?/(?P<id>[^/]+)", "Operations.Get", _get_operation)

    # --- dispatch ---------------------------------------------------------------------------------------------

    def _dispatch(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in http.headers.items()}
        original = headers.get("x-mlplat-original-host") or headers.get("host", "")
        host, groups = _host_kind(original)
        try:
            route, found = self._match(host, http.command, path)
            request = Request(http.command, original, path, query, headers, body, {**groups, **found})
            with self.lock:
                self.calls.append((route.action, path))
                self.actions_seen.add(route.action)
                if host not in ("login", "scoring"):  # scoring: the endpoint's handler checks its key/token
                    self._authorize(headers, xml=host in ("blob", "file"))
                json_body = headers.get("content-type", "").startswith("application/json")
                key = (path, hashlib.sha256(body if json_body else b"").hexdigest())
                if self._should_throttle(route.action, http.command, key):
                    raise ApiError(429, "TooManyRequests", "The request is being throttled as the limit has been "
                                   "reached for operation type - Write_ObservationWindow_00:05:00.",
                                   xml=host in ("blob", "file"))
                answer = route.handler(self, request)
            response = answer if isinstance(answer, Response) else Response(200, answer)
            if response.status == 429:
                response.headers.setdefault("Retry-After", "0")
        except ApiError as err:
            response = err.response()
            if err.status == 429:
                response.headers["Retry-After"] = "0"
        except Exception as err:  # a bug in the fake: say so in ARM's shape, not as a dropped connection
            response = ApiError(500, "InternalServerError", f"fake server error: {type(err).__name__}: {err}"
                                ).response()
        self._write(http, response)

    def _match(self, host: str, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self.routes:
            if route.host != host:
                continue
            found = route.pattern.match(path)
            if found is None:
                continue
            if route.method != method:
                allowed = True
                continue
            return route, {k: v for k, v in found.groupdict().items() if v is not None}
        if allowed:
            raise ApiError(405, "MethodNotAllowed", f"The requested method {method} is not allowed on {path}.")
        raise ApiError(404, "NotFound", f"No route for {host} {method} {path}.")

    def _authorize(self, headers: dict[str, str], *, xml: bool) -> None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            raise ApiError(401, "InvalidAuthenticationToken", "The access token is invalid.", xml=xml)

    @staticmethod
    def _write(http: BaseHTTPRequestHandler, response: Response) -> None:
        if response.body is None:
            data, ctype = b"", None
        elif isinstance(response.body, bytes):
            data, ctype = response.body, response.headers.get("Content-Type", "application/octet-stream")
        else:
            data, ctype = json.dumps(response.body).encode(), "application/json; charset=utf-8"
        http.send_response(response.status)
        if ctype:
            http.send_header("Content-Type", ctype)
        http.send_header("Content-Length", str(len(data)))
        for key, value in response.headers.items():
            if key.lower() not in ("content-type", "content-length"):
                http.send_header(key, value)
        http.end_headers()
        if http.command != "HEAD":
            http.wfile.write(data)


def _host_kind(host: str) -> tuple[str, dict[str, str]]:
    host = host.split(":")[0].lower()
    if host == ARM:
        return "arm", {}
    if host == LOGIN:
        return "login", {}
    found = re.fullmatch(r"(?P<account>[a-z0-9]+)\.(?P<service>blob|file)\.core\.windows\.net", host)
    if found:
        return found["service"], {"account": found["account"]}
    found = re.fullmatch(r"(?P<endpoint>[a-z0-9-]+)\.(?P<location>[a-z0-9]+)\.inference\.ml\.azure\.com", host)
    if found:
        return "scoring", {"endpoint": found["endpoint"]}
    return "unknown", {}


# --- core handlers -------------------------------------------------------------------------------------------


def _instance_discovery(fake: AzureFake, request: Request) -> dict[str, Any]:
    return {"tenant_discovery_endpoint": f"https://{LOGIN}/{fake.tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1", "metadata": [{"preferred_network": LOGIN, "preferred_cache": LOGIN,
                                                "aliases": [LOGIN]}]}


def _openid_configuration(fake: AzureFake, request: Request) -> dict[str, Any]:
    tenant = request.groups["tenant"]
    base = f"https://{LOGIN}/{tenant}"
    return {"token_endpoint": f"{base}/oauth2/v2.0/token", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{base}/v2.0", "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "tenant_region_scope": "NA"}


def _token(fake: AzureFake, request: Request) -> Response:
    form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
    if form.get("grant_type") != "client_credentials" or form.get("client_secret") != fake.client_secret:
        return Response(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client "
                                                                              "secret provided."})
    token = "eyJ0eXAiOiJKV1Qi.fake." + secrets.token_urlsafe(24)
    fake.tokens.add(token)
    return Response(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                          "access_token": token})


def _get_workspace(fake: AzureFake, request: Request) -> dict[str, Any]:
    return fake.objects["workspaces"][WORKSPACE.lower()]


def _get_operation(fake: AzureFake, request: Request) -> Response:
    op = fake.operations.get(request.groups["id"])
    if op is None:
        raise ApiError(404, "NotFound", f"Operation {request.groups['id']} was not found.")
    fake._advance(op.id)
    if request.groups["kind"] == "Result":  # the Location header: 202 while running, then 200 (no body)
        return Response(202 if op.status == "InProgress" else 200, None, {"Retry-After": "0"})
    body: dict[str, Any] = {"id": op.id, "name": op.id, "status": op.status}
    if op.error:
        body["error"] = op.error
    return Response(200, body, {"Retry-After": "0"})


def started_server() -> AzureFake:
    return AzureFake().start()
