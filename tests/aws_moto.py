"""A real-HTTP moto server for the AWS plugin tests, plus faithful additions for APIs moto lacks.

The server runs moto's WSGI app in a daemon thread of *this* process on 127.0.0.1 behind a small
middleware that logs every AWS action, can answer with throttling errors and can hold SageMaker
endpoint/cluster statuses in ``Creating``/``Updating`` for a few describes.  boto3 clients here
and in subprocesses reach it through ``endpoint_url=server.url`` with the env from ``server.env()``.

Intended fixtures (tests/conftest.py)::

    @pytest.fixture(scope="session")
    def moto_server() -> Iterator[MotoServer]:
        server = started_server()
        yield server
        server.stop()

    @pytest.fixture
    def aws(moto_server: MotoServer) -> MotoServer:
        moto_server.reset()  # empty moto backends, empty call log, no throttling/delays
        return moto_server

Additions installed by :func:`install_extensions` (moto 5.2.5 lacks them): SageMaker
``UpdateEndpoint``, ``UpdateCluster``, ``DeleteModelPackage``, ``DeleteModelPackageGroup``,
``ShadowProductionVariants`` on endpoint configs/endpoints, ``ListTags``/``AddTags`` on model
package ARNs, monotonically increasing model package versions after deletes, ``ThreadsPerCore``
optional in ``CreateCluster``, ``UpdateEndpointWeightsAndCapacities`` keeping the half (weight or
instance count) a variant spec leaves out, and ``FileSystemId`` in EFS's ``FileSystemAlreadyExists`` error;
Route 53's ``CreateHealthCheck`` idempotent per ``CallerReference``, weighted record ``DELETE`` matching name, type,
set identifier and values (moto drops every set with that identifier in the zone), atomic change batches, the CNAME
conflict rule, changes that are ``PENDING`` until read with ``GetChange``, and its own throttling error (400
``Throttling``); SageMaker runtime ``InvokeEndpoint`` named in the call log and refusing an endpoint that does not
exist.

Monitoring (``_install_sagemaker_monitoring``, ``_install_cloudwatch_percentiles``, ``_install_sns_confirmation``):
SageMaker ``DataCaptureConfig`` checked against the API's constraints on ``CreateEndpointConfig``, left out of
``DescribeEndpointConfig`` when the config has none, and reported by ``DescribeEndpoint`` as the API's
``DataCaptureConfigSummary`` (``CaptureStatus``, ``CurrentSamplingPercentage``); data-quality job definitions
(moto has them) checked against the API's constraints, ``ResourceInUse`` for a name taken, summaries naming their
endpoint, list filters, and refused deletion while a monitoring schedule uses one; monitoring schedules (moto has
none): ``CreateMonitoringSchedule``, ``DescribeMonitoringSchedule``, ``UpdateMonitoringSchedule``,
``DeleteMonitoringSchedule``, ``ListMonitoringSchedules`` with the API's constraints, the documented cron forms,
``ResourceInUse``/``ResourceNotFound``, a missing job definition or endpoint (or one without data capture) refused,
``Pending`` until described once, then ``Scheduled`` (no update or delete while ``Pending``), and tags
(``AddTags``/``ListTags``/``DeleteTags``) on their ARNs; CloudWatch percentile statistics (``p95``...) in
``GetMetricData`` (moto answers null); SNS e-mail and http(s) subscriptions ``PendingConfirmation`` until
confirmed (``confirm_all``), listed as such, and ``CreateTopic`` of an existing name with
other tags refused.
"""

import contextlib
import dataclasses
import io
import json
import re
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import boto3
import botocore.session
from botocore.config import Config
from werkzeug.serving import BaseWSGIServer, make_server

REGION = "us-east-1"
MUTATING_PREFIXES = ("Create", "Update", "Delete", "Put", "Register")

# SigV4 signing name -> botocore service name, where they differ.
_SIGNING_TO_SERVICE = {"elasticfilesystem": "efs", "monitoring": "cloudwatch", "email": "ses"}

StartResponse = Callable[..., Any]


# --------------------------------------------------------------------------------------------
# Request identification
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsRequest:
    """What the middleware learned about one request."""

    service: str  # SigV4 signing name, e.g. "sagemaker", "elasticfilesystem", "s3"
    protocol: str  # json | query | ec2 | rest-json | rest-xml | unknown
    action: str  # e.g. "CreateEndpoint"; "" when it could not be worked out
    params: dict[str, Any]  # decoded json body (json protocol only)


@dataclass(frozen=True)
class _RestOp:
    name: str
    method: str
    path: re.Pattern[str]
    query: dict[str, str | None]  # required query keys (value None = any value)
    headers: tuple[str, ...]  # required headers, WSGI style (HTTP_X_AMZ_COPY_SOURCE)
    literal: int  # literal characters in the path template, for specificity

    def score(self, method: str, path: str, query: dict[str, list[str]], environ: dict[str, Any]) -> int:
        """-1 when the operation does not match, else how specific the match is."""
        if method != self.method or not self.path.fullmatch(path):
            return -1
        for key, value in self.query.items():
            if key not in query or (value is not None and value not in query[key]):
                return -1
        if any(h not in environ for h in self.headers):
            return -1
        return (len(self.query) + len(self.headers)) * 10_000 + self.literal


class _RestIndex:
    """Maps (method, path, query, headers) to an operation name using botocore's service model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[str, tuple[str, list[_RestOp]]] = {}
        self._session = botocore.session.get_session()

    def model(self, signing_name: str) -> tuple[str, list[_RestOp]]:
        """(protocol, operations) of the service signed as ``signing_name``."""
        with self._lock:
            if signing_name not in self._ops:
                self._ops[signing_name] = self._load(_SIGNING_TO_SERVICE.get(signing_name, signing_name))
            return self._ops[signing_name]

    def _load(self, service: str) -> tuple[str, list[_RestOp]]:
        try:
            model = self._session.get_service_model(service)
        except Exception:
            return "unknown", []
        ops: list[_RestOp] = []
        if model.protocol not in ("rest-json", "rest-xml"):
            return model.protocol, ops
        for name in model.operation_names:
            op = model.operation_model(name)
            uri: str = op.http.get("requestUri", "/")
            path_t, _, query_t = uri.partition("?")
            pattern = ""
            for literal, greedy_var in re.findall(r"([^{]*)(\{[^}]*\})?", path_t):
                pattern += re.escape(literal)
                if greedy_var:
                    pattern += "(.+)" if greedy_var.endswith("+}") else "([^/]+)"
            pattern = pattern.rstrip("/") + "/?" if pattern not in ("", "/") else "/?"
            query: dict[str, str | None] = {}
            for part in filter(None, query_t.split("&")):
                key, eq, value = part.partition("=")
                query[key] = value if eq else None
            headers: list[str] = []
            shape = op.input_shape
            if shape is not None:
                for member in shape.required_members:
                    m = shape.members[member]
                    where, wire = m.serialization.get("location"), m.serialization.get("name", member)
                    if where == "querystring":
                        query.setdefault(wire, None)
                    elif where == "header":
                        headers.append("HTTP_" + wire.upper().replace("-", "_"))
            literal = len(re.sub(r"\{[^}]*\}", "", path_t))
            ops.append(_RestOp(name, op.http["method"], re.compile(pattern), query, tuple(headers), literal))
        return model.protocol, ops


_REST = _RestIndex()
_RUNTIME = re.compile(r"/endpoints/[^/]+/(async-)?invocations$")


def _signing_service(environ: dict[str, Any]) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    match = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
    return match.group(1) if match else ""


def identify(environ: dict[str, Any], body: bytes) -> AwsRequest:
    """Work out service, protocol and action name of a signed AWS request."""
    service = _signing_service(environ)
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        return AwsRequest(service, "json", target.rsplit(".", 1)[-1], params if isinstance(params, dict) else {})
    form = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        form.update(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
    if "Action" in form:
        return AwsRequest(service, "ec2" if service == "ec2" else "query", form["Action"][0], {})
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/") or "/"
    # the SageMaker runtime signs as "sagemaker" too; its paths tell it from the (json) control plane
    protocol, ops = _REST.model("sagemaker-runtime" if service == "sagemaker" and _RUNTIME.match(path) else service)
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    best, best_score = "", -1
    for op in ops:
        score = op.score(method, path, query, environ)
        if score > best_score:
            best, best_score = op.name, score
    return AwsRequest(service, protocol, best, {})


# --------------------------------------------------------------------------------------------
# Throttling error shapes
# --------------------------------------------------------------------------------------------


def throttling_response(protocol: str, service: str = "") -> tuple[str, list[tuple[str, str]], bytes]:
    """(status, headers, body) of the real throttling error for ``protocol`` (and ``service`` where it has its own)."""
    rid = str(uuid.uuid4())
    if service == "route53":  # rest-xml, but Route 53's own: 400 Throttling in an ErrorResponse
        body = (
            '<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error>'
            "<Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>"
            f"<RequestId>{rid}</RequestId></ErrorResponse>"
        ).encode()
        return "400 Bad Request", [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)], body
    if protocol == "json":
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        return "400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", rid)], body
    if protocol == "rest-json":
        body = json.dumps({"ErrorCode": "ThrottlingException", "Message": "Rate exceeded"}).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", "ThrottlingException"),
            ("x-amzn-RequestId", rid),
        ]
        return "429 Too Many Requests", headers, body
    if protocol == "rest-xml":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            f"<Message>Please reduce your request rate.</Message><RequestId>{rid}</RequestId>"
            "<HostId>moto</HostId></Error>"
        ).encode()
        return "503 Slow Down", [("Content-Type", "application/xml")], body
    if protocol == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>'
            f"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"
        ).encode()
        return "503 Service Unavailable", [("Content-Type", "text/xml;charset=UTF-8")], body
    # query protocol (IAM, STS, ...): the real code is "Throttling".
    body = (
        "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
        f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
    ).encode()
    return "400 Bad Request", [("Content-Type", "text/xml")], body


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class _Restore(contextlib.AbstractContextManager["_Restore"]):
    """Context manager returned by the knobs; leaving it undoes the knob."""

    def __init__(self, undo: Callable[[], None]) -> None:
        self._undo = undo

    def __exit__(self, *exc: object) -> None:
        self._undo()


# Describe action -> (name param, status field, create actions, update actions)
_DELAYED: dict[str, tuple[str, str, set[str], set[str]]] = {
    "DescribeEndpoint": (
        "EndpointName",
        "EndpointStatus",
        {"CreateEndpoint"},
        {"UpdateEndpoint", "UpdateEndpointWeightsAndCapacities"},
    ),
    "DescribeCluster": ("ClusterName", "ClusterStatus", {"CreateCluster"}, {"UpdateCluster"}),
}


class MotoServer:
    """moto's server app on 127.0.0.1:<free port>, with an action log, throttling and status delays.

    ``calls`` lists every AWS action received, in order, throttled ones included; ``throttled``
    lists the subset answered with a throttling error (those never reached moto).
    """

    region = REGION

    def __init__(self) -> None:
        install_extensions()
        self.calls: list[str] = []
        self.throttled: list[str] = []
        #: every action this server ever answered (never cleared): the closing report of what was exercised
        self.actions_seen: set[str] = set()
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._moto_app: Any = None
        self._throttle_times = 0
        self._throttle_actions: set[str] | None = None
        self._throttle_seen: dict[str, int] = {}
        self._delay_times = 0
        self._pending: dict[tuple[str, str], tuple[str, int]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "MotoServer":
        """Bind a free port and serve in a daemon thread."""
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app

        self._moto_app = DomainDispatcherApplication(create_backend_app)

        class QuietHandler(MotoRequestHandler):  # type: ignore[misc]
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                """Skip the per-request access log line (errors are still logged)."""

        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("MotoServer not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    # -- clients -----------------------------------------------------------------------------

    def client(self, service: str, *, max_attempts: int = 1) -> Any:
        """A boto3 client for ``service`` pointed at the server (botocore retries off by default)."""
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": max_attempts, "mode": "standard"}),
        )

    def env(self) -> dict[str, str]:
        """Env vars a subprocess needs to sign requests for this server."""
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def reset(self) -> None:
        """Empty every moto backend, the call log, and switch off throttling and delays."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        with self._lock:
            self.calls.clear()
            self.throttled.clear()
            self._throttle_times, self._throttle_actions, self._throttle_seen = 0, None, {}
            self._delay_times, self._pending = 0, {}

    # -- call log ----------------------------------------------------------------------------

    def count(self, action: str) -> int:
        """How many requests for ``action`` were received (throttled ones included)."""
        with self._lock:
            return self.calls.count(action)

    def clear_calls(self) -> None:
        """Forget the call log (and the throttled log)."""
        with self._lock:
            self.calls.clear()
            self.throttled.clear()

    # -- knobs -------------------------------------------------------------------------------

    def throttle(self, times: int, actions: set[str] | None = None) -> _Restore:
        """Throttle the first ``times`` requests of each mutating action (or of ``actions``).

        Usable as a context manager; leaving it switches throttling off.
        """
        with self._lock:
            self._throttle_times, self._throttle_actions, self._throttle_seen = times, actions, {}

        def undo() -> None:
            with self._lock:
                self._throttle_times, self._throttle_actions, self._throttle_seen = 0, None, {}

        return _Restore(undo)

    def delay_status(self, times: int) -> _Restore:
        """After each Create/Update of an endpoint or cluster, the next ``times`` describes of it
        report ``Creating``/``Updating`` before moto's real status.  Context manager; leaving it
        stops arming new delays (already armed ones still count down)."""
        with self._lock:
            self._delay_times = times

        def undo() -> None:
            with self._lock:
                self._delay_times = 0

        return _Restore(undo)

    # -- middleware --------------------------------------------------------------------------

    def _should_throttle(self, action: str) -> bool:
        if not self._throttle_times or not action:
            return False
        if self._throttle_actions is not None:
            wanted = action in self._throttle_actions
        else:
            wanted = action.startswith(MUTATING_PREFIXES)
        if not wanted:
            return False
        seen = self._throttle_seen.get(action, 0)
        self._throttle_seen[action] = seen + 1
        return seen < self._throttle_times

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api") or "HTTP_AUTHORIZATION" not in environ:
            return self._moto_app(environ, start_response)
        body = b""
        ctype = environ.get("CONTENT_TYPE", "")
        if environ.get("CONTENT_LENGTH") and (ctype.startswith("application/x-") or "HTTP_X_AMZ_TARGET" in environ):
            body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
            environ["wsgi.input"] = io.BytesIO(body)
        req = identify(environ, body)
        name = req.action or f"{environ.get('REQUEST_METHOD')} {path}"
        with self._lock:
            self.calls.append(name)
            self.actions_seen.add(name)
            throttled = self._should_throttle(req.action)
            if throttled:
                self.throttled.append(name)
        if throttled:
            status, headers, payload = throttling_response(req.protocol, req.service)
            start_response(status, [*headers, ("Content-Length", str(len(payload)))])
            return [payload]
        if req.service != "sagemaker" or not (req.action in _DELAYED or self._arms_delay(req.action)):
            return self._moto_app(environ, start_response)
        return self._sagemaker_with_delays(req, environ, start_response)

    def _arms_delay(self, action: str) -> bool:
        return any(action in creates | updates for _, _, creates, updates in _DELAYED.values())

    def _sagemaker_with_delays(
        self, req: AwsRequest, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        result = self._moto_app(environ, capture)
        try:
            payload = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        status: str = captured["status"]
        headers: list[tuple[str, str]] = captured["headers"]
        ok = status.startswith("200")
        for describe, (param, field, creates, updates) in _DELAYED.items():
            key = (describe, str(req.params.get(param, "")))
            with self._lock:
                if ok and self._delay_times and req.action in creates | updates:
                    word = "Creating" if req.action in creates else "Updating"
                    self._pending[key] = (word, self._delay_times)
                elif ok and req.action == describe and self._pending.get(key, ("", 0))[1] > 0:
                    word, left = self._pending[key]
                    self._pending[key] = (word, left - 1)
                    doc = json.loads(payload)
                    doc[field] = word
                    payload = json.dumps(doc).encode()
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(payload)))])
        return [payload]


def started_server() -> MotoServer:
    """Start a :class:`MotoServer` and return it (the caller stops it)."""
    return MotoServer().start()


# --------------------------------------------------------------------------------------------
# SageMaker additions to moto's in-process backend
# --------------------------------------------------------------------------------------------

_installed = False
_install_lock = threading.Lock()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _name_from_arn(value: str) -> str:
    return value.rsplit("/", 1)[-1] if value.startswith("arn:") else value


def install_extensions() -> None:
    """Add the SageMaker APIs moto 5.2.5 lacks to its response class and backend (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _install_sagemaker()
        _install_efs()
        _install_fsx()
        _install_s3_conditional_writes()
        _install_route53()
        _install_sagemaker_runtime()
        _install_sagemaker_monitoring()
        _install_cloudwatch_percentiles()
        _install_sns_confirmation()
        _installed = True


def _install_s3_conditional_writes() -> None:
    """Make S3's conditional writes atomic, as on AWS. moto 5.2.5 already answers PutObject If-None-Match: * and
    If-Match, and DeleteObject If-Match, with 412 PreconditionFailed (404 NoSuchKey for If-Match on no object),
    but checks the condition and then writes in two steps: two racing writers on the threaded server can both
    pass the check. One lock around PutObject and DeleteObject makes check-and-write one step."""
    from moto.s3.responses import S3Response

    write_lock = threading.RLock()

    def serialized(original: Callable[..., Any]) -> Callable[..., Any]:
        def write(self: Any, *args: Any, **kwargs: Any) -> Any:
            with write_lock:
                return original(self, *args, **kwargs)

        return write

    S3Response.put_object = serialized(S3Response.put_object)
    S3Response.delete_object = serialized(S3Response.delete_object)


def _install_sagemaker_runtime() -> None:
    """InvokeEndpoint on an endpoint that does not exist (or is not InService) is a ValidationError, as on AWS;
    moto answers any name with its static result."""
    from moto.core.exceptions import ServiceException
    from moto.sagemaker.models import sagemaker_backends
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    class ValidationError(ServiceException):  # outside moto's packages: serialized with sagemaker-runtime's model
        code = "ValidationError"

    original = SageMakerRuntimeResponse.invoke_endpoint

    def invoke_endpoint(self: Any) -> Any:
        name = self.path.split("/")[2]
        endpoint = sagemaker_backends[self.current_account][self.region].endpoints.get(name)
        if endpoint is None:
            raise ValidationError(f"Endpoint {name} of account {self.current_account} not found.")
        if endpoint.endpoint_status != "InService":
            raise ValidationError(f"Endpoint {name} is not in service.")
        return original(self)

    SageMakerRuntimeResponse.invoke_endpoint = invoke_endpoint


def _install_route53() -> None:
    """Route 53 as its API reference says, where moto differs:

    - CreateHealthCheck with a CallerReference already used returns that health check when the settings are the
      same and it still exists; otherwise (other settings, or deleted) it is HealthCheckAlreadyExists (409).
    - A change batch is atomic: it is checked whole, and applied whole or not at all. DELETE must name an existing
      set by name, type and (weighted) SetIdentifier, with its current values; a CNAME cannot share its name with
      another record. (moto deletes every set with the SetIdentifier, in any name.)
    - ChangeResourceRecordSets answers PENDING with a new change id; GetChange answers INSYNC for it (NoSuchChange
      for an id never issued).
    """
    from moto.core.responses import ActionResult
    from moto.route53 import models as r53
    from moto.route53.exceptions import Route53ClientError
    from moto.route53.responses import Route53

    backend_cls = r53.Route53Backend

    def error(code: str, message: str) -> Route53ClientError:
        return Route53ClientError(code, message)

    original_create_check = backend_cls.create_health_check

    def create_health_check(self: Any, caller_reference: str, health_check_args: dict[str, Any]) -> Any:
        used: dict[str, tuple[str, dict[str, Any]]] = self.__dict__.setdefault("_mlplat_references", {})
        if caller_reference in used:
            check_id, args = used[caller_reference]
            if check_id in self.health_checks and args == health_check_args:
                return self.health_checks[check_id]
            raise error("HealthCheckAlreadyExists", f"A health check with the CallerReference {caller_reference} "
                                                    "already exists, or was deleted, with other settings.")
        check = original_create_check(self, caller_reference, health_check_args)
        used[caller_reference] = (check.id, dict(health_check_args))
        return check

    def same_name(a: str, b: str) -> bool:
        return a.rstrip(".").lower() == b.rstrip(".").lower()

    def values(ttl: Any, records: list[str], weight: Any, check: Any, alias: Any) -> tuple[Any, ...]:
        number = lambda v: None if v is None else int(v)  # noqa: E731  (the XML parser may give strings)
        return number(ttl), sorted(records), number(weight), check, alias

    def stored_values(rrset: Any) -> tuple[Any, ...]:
        return values(rrset.ttl, rrset.records or [], rrset.weight, rrset.health_check_id, rrset.alias_target)

    def given_values(rrset: dict[str, Any]) -> tuple[Any, ...]:
        records = [r["Value"] for r in rrset.get("ResourceRecords") or []]
        return values(rrset.get("TTL"), records, rrset.get("Weight"), rrset.get("HealthCheckId"),
                      rrset.get("AliasTarget"))

    original_change = backend_cls.change_resource_record_sets

    def change_resource_record_sets(self: Any, zoneid: str, change_list: list[dict[str, Any]]) -> None:
        zone = self.get_hosted_zone(zoneid)
        saved_sets, saved_journal = list(zone.rrsets), list(zone.rr_changes)
        try:
            for change in change_list:
                rrset = change["ResourceRecordSet"]
                if change["Action"] != "DELETE" or rrset.get("SetIdentifier") is None:
                    original_change(self, zoneid, [change])
                    continue
                key = (rrset["Name"], rrset["Type"], rrset["SetIdentifier"])
                match = next((r for r in zone.rrsets if same_name(r.name, key[0]) and r.type == key[1]
                              and r.set_identifier == key[2]), None)
                where = f"[name='{key[0].rstrip('.')}.', type='{key[1]}', set-identifier='{key[2]}']"
                if match is None:
                    raise error("InvalidChangeBatch", f"Tried to delete resource record set {where} but it was not "
                                                      "found")
                if stored_values(match) != given_values(rrset):
                    raise error("InvalidChangeBatch", f"Tried to delete resource record set {where} but the values "
                                                      "provided do not match the current values")
                zone.rrsets.remove(match)
                zone.rr_changes.append(json.loads(json.dumps(change)))
            for cname in [r for r in zone.rrsets if r.type == "CNAME"]:
                if any(same_name(r.name, cname.name) and r.type != "CNAME" for r in zone.rrsets):
                    raise error("InvalidChangeBatch", f"RRSet of type CNAME with DNS name {cname.name} is not "
                                                      "permitted as it conflicts with other records with the same "
                                                      "DNS name in zone " + zone.name)
        except Exception:
            zone.rrsets[:] = saved_sets
            zone.rr_changes[:] = saved_journal
            raise
        issued.change = f"C{uuid.uuid4().hex[:20].upper()}"
        self.__dict__.setdefault("_mlplat_changes", {})[issued.change] = "PENDING"

    issued = threading.local()  # the id of the change this request thread just made, for its response

    def change_response(self: Any) -> ActionResult:
        original_change_response(self)
        change = issued.change
        return ActionResult({"ChangeInfo": {"Id": f"/change/{change}", "Status": "PENDING", "SubmittedAt": _now()}})

    def get_change_response(self: Any) -> ActionResult:
        change = self._get_param("Id").rsplit("/", 1)[-1]
        known: dict[str, str] = self.backend.__dict__.get("_mlplat_changes", {})
        if change not in known:
            raise error("NoSuchChange", f"A change with the specified change ID {change} does not exist.")
        known[change] = "INSYNC"  # propagated by the time anyone asks
        return ActionResult({"ChangeInfo": {"Id": f"/change/{change}", "Status": "INSYNC", "SubmittedAt": _now()}})

    original_change_response = Route53.change_resource_record_sets
    backend_cls.create_health_check = create_health_check
    backend_cls.change_resource_record_sets = change_resource_record_sets
    Route53.change_resource_record_sets = change_response
    Route53.get_change = get_change_response



def _install_fsx() -> None:
    """FSx as the real API: every file system reports its Lifecycle (AVAILABLE once created; moto omits it),
    its Lustre MountName, and a repeated ClientRequestToken returns the first file system instead of a second."""
    from moto.fsx import models as fsx

    to_dict = fsx.FileSystem.to_dict

    def to_dict_with_lifecycle(self: Any) -> dict[str, Any]:
        out = to_dict(self)
        out.setdefault("Lifecycle", "AVAILABLE")
        if out.get("FileSystemType") == "LUSTRE":
            out["LustreConfiguration"] = {"MountName": self.file_system_id[3:11],
                                          **(out.get("LustreConfiguration") or {})}
        return out

    create = fsx.FSxBackend.create_file_system

    def create_once(self: Any, client_request_token: str | None = None, **kwargs: Any) -> Any:
        tokens: dict[str, Any] = self.__dict__.setdefault("_mlplat_tokens", {})
        if client_request_token and client_request_token in tokens:
            return tokens[client_request_token]
        created = create(self, client_request_token=client_request_token, **kwargs)
        if client_request_token:
            tokens[client_request_token] = created
        return created

    fsx.FileSystem.to_dict = to_dict_with_lifecycle
    fsx.FSxBackend.create_file_system = create_once


def _install_efs() -> None:
    """Make EFS's FileSystemAlreadyExists carry the FileSystemId, as the real error does."""
    from moto.efs import models as efs
    from moto.efs.exceptions import FileSystemAlreadyExists

    class FileSystemAlreadyExistsWithId(FileSystemAlreadyExists):
        def __init__(self, creation_token: str, file_system_id: str) -> None:
            super().__init__(creation_token)
            self.message = f"File system '{file_system_id}' already exists with creation token '{creation_token}'"
            self.description = json.dumps(
                {
                    "__type": "FileSystemAlreadyExists",
                    "ErrorCode": "FileSystemAlreadyExists",
                    "Message": self.message,
                    "FileSystemId": file_system_id,
                }
            )

    original = efs.EFSBackend.create_file_system

    def create_file_system(self: Any, creation_token: str, *args: Any, **kwargs: Any) -> Any:
        if creation_token in self.creation_tokens:
            for fs in self.file_systems_by_id.values():
                if fs.creation_token == creation_token:
                    raise FileSystemAlreadyExistsWithId(creation_token, fs.file_system_id)
        return original(self, creation_token, *args, **kwargs)

    efs.EFSBackend.create_file_system = create_file_system


def _install_sagemaker() -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.sagemaker import models as sm
    from moto.sagemaker.exceptions import ConflictException, ResourceNotFound, ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    backend_cls = sm.SageMakerModelBackend

    # ---- UpdateEndpoint -------------------------------------------------------------------
    def update_endpoint(
        backend: Any,
        endpoint_name: str,
        endpoint_config_name: str,
        retain_all_variant_properties: bool,
        exclude_retained_variant_properties: list[dict[str, str]],
        deployment_config: dict[str, Any] | None,
        retain_deployment_config: bool,
    ) -> str:
        endpoint = backend.endpoints.get(endpoint_name)
        if endpoint is None:
            arn = sm.FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
            raise ValidationError(message=f"Could not find endpoint '{arn}'.")
        config = backend.endpoint_configs.get(endpoint_config_name)
        if config is None:
            arn = sm.FakeEndpointConfig.arn_formatter(endpoint_config_name, backend.account_id, backend.region_name)
            raise ValidationError(message=f"Could not find endpoint configuration '{arn}'.")
        if endpoint.endpoint_status not in ("InService", "Failed"):
            raise ValidationError(message=f"Cannot update in-progress endpoint '{endpoint.arn}'.")
        new_variants = endpoint._process_production_variants(config.production_variants)
        excluded = {e.get("VariantPropertyType") for e in exclude_retained_variant_properties or []}
        if retain_all_variant_properties:
            old = {v["VariantName"]: v for v in endpoint.production_variants}
            for variant in new_variants:
                previous = old.get(variant["VariantName"])
                if previous is None:
                    continue
                if "DesiredInstanceCount" not in excluded:
                    for k in ("CurrentInstanceCount", "DesiredInstanceCount"):
                        if k in previous:
                            variant[k] = previous[k]
                if "DesiredWeight" not in excluded:
                    for k in ("CurrentWeight", "DesiredWeight"):
                        if k in previous:
                            variant[k] = previous[k]
            if "DataCaptureConfig" in excluded:
                endpoint.data_capture_config = config.data_capture_config
        else:
            endpoint.data_capture_config = config.data_capture_config
        endpoint.endpoint_config_name = endpoint_config_name
        endpoint.production_variants = new_variants
        shadow = getattr(config, "shadow_production_variants", None)
        endpoint.shadow_production_variants = endpoint._process_production_variants(shadow) if shadow else None
        if deployment_config:
            endpoint.last_deployment_config = deployment_config
        elif not retain_deployment_config:
            endpoint.last_deployment_config = None
        endpoint.last_modified_time = _now()
        return str(endpoint.arn)

    def update_endpoint_response(self: Any) -> ActionResult:
        arn = update_endpoint(
            self.sagemaker_backend,
            endpoint_name=self._get_param("EndpointName"),
            endpoint_config_name=self._get_param("EndpointConfigName"),
            retain_all_variant_properties=bool(self._get_param("RetainAllVariantProperties", False)),
            exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties") or [],
            deployment_config=self._get_param("DeploymentConfig"),
            retain_deployment_config=bool(self._get_param("RetainDeploymentConfig", False)),
        )
        return ActionResult({"EndpointArn": arn})

    # ---- ShadowProductionVariants -----------------------------------------------------------
    original_create_config = SageMakerResponse.create_endpoint_config

    def create_endpoint_config_response(self: Any) -> ActionResult:
        shadow = self._get_param("ShadowProductionVariants")
        if shadow:
            backend = self.sagemaker_backend
            backend.validate_production_variants(shadow)
            probe = object.__new__(sm.FakeEndpointConfig)
            probe.validate_production_variants(shadow)  # instance types / serverless config
        result = original_create_config(self)
        config = self.sagemaker_backend.endpoint_configs[self._get_param("EndpointConfigName")]
        config.shadow_production_variants = shadow or None
        return result

    original_create_endpoint = backend_cls.create_endpoint
    original_create_cluster = backend_cls.create_cluster

    def create_cluster(self: Any, cluster_name: str, instance_groups: list[dict[str, Any]], **kwargs: Any) -> str:
        for group in instance_groups or []:  # optional in AWS; moto answers 500 without it
            group.setdefault("ThreadsPerCore", 1)
        return original_create_cluster(self, cluster_name=cluster_name, instance_groups=instance_groups, **kwargs)

    def create_endpoint(self: Any, endpoint_name: str, endpoint_config_name: str, tags: Any) -> Any:
        endpoint = original_create_endpoint(self, endpoint_name, endpoint_config_name, tags)
        shadow = getattr(self.endpoint_configs[endpoint_config_name], "shadow_production_variants", None)
        endpoint.shadow_production_variants = endpoint._process_production_variants(shadow) if shadow else None
        return endpoint

    original_weights = backend_cls.update_endpoint_weights_and_capacities

    def update_endpoint_weights_and_capacities(
        self: Any, endpoint_name: str, desired_weights_and_capacities: list[dict[str, Any]]
    ) -> str:
        """moto overwrites the half not given (weight or count) with None; AWS keeps it."""
        endpoint = self.endpoints.get(endpoint_name)
        before = {v["VariantName"]: dict(v) for v in endpoint.production_variants} if endpoint else {}
        arn = original_weights(self, endpoint_name, desired_weights_and_capacities)
        for spec in desired_weights_and_capacities:
            variant = next(v for v in endpoint.production_variants if v["VariantName"] == spec["VariantName"])
            old = before[spec["VariantName"]]
            for given, keys in (
                ("DesiredWeight", ("CurrentWeight", "DesiredWeight")),
                ("DesiredInstanceCount", ("CurrentInstanceCount", "DesiredInstanceCount")),
            ):
                if spec.get(given) is None:
                    for key in keys:
                        if key in old:
                            variant[key] = old[key]
                        else:
                            variant.pop(key, None)
        return str(arn)

    # ---- UpdateCluster ----------------------------------------------------------------------
    def update_cluster(
        backend: Any, cluster_name: str, instance_groups: list[dict[str, Any]], to_delete: list[str]
    ) -> str:
        name = _name_from_arn(cluster_name)
        cluster = backend.clusters.get(name)
        if cluster is None:
            raise ResourceNotFound(message=f"Could not find cluster '{name}'.")
        current = {g["InstanceGroupName"]: g for g in cluster.instance_groups}
        names = [g["InstanceGroupName"] for g in instance_groups]
        if len(set(names)) != len(names):
            raise ValidationError(message="Instance group names must be unique within the request.")
        for group_name in to_delete:
            if group_name not in current:
                raise ValidationError(message=f"Instance group '{group_name}' does not exist in cluster '{name}'.")
            if group_name in names:
                raise ValidationError(
                    message=f"Instance group '{group_name}' cannot be both updated and deleted in the same request."
                )
        for spec in instance_groups:
            cluster.valid_cluster_node_instance_types(spec["InstanceType"])
            uri = spec["LifeCycleConfig"]["SourceS3Uri"]
            if not uri.startswith("s3://sagemaker-"):
                raise ValidationError(
                    message=f"Validation Error: SourceS3Uri {uri} does not start with 's3://sagemaker'."
                )
            existing = current.get(spec["InstanceGroupName"])
            if existing is not None and existing["InstanceType"] != spec["InstanceType"]:
                raise ValidationError(
                    message=(
                        f"Instance type of instance group '{spec['InstanceGroupName']}' cannot be changed from "
                        f"{existing['InstanceType']} to {spec['InstanceType']}."
                    )
                )
        groups = [g for g in cluster.instance_groups if g["InstanceGroupName"] not in to_delete]
        for spec in instance_groups:
            group = {k: v for k, v in spec.items() if k != "InstanceCount"}
            group["CurrentCount"] = group["TargetCount"] = spec["InstanceCount"]
            existing = current.get(spec["InstanceGroupName"])
            if existing is not None:
                group.setdefault("ThreadsPerCore", existing.get("ThreadsPerCore"))
                groups[groups.index(existing)] = group
            else:
                groups.append(group)
        cluster.instance_groups = groups
        for node_id, node in list(cluster.nodes.items()):
            if node.instance_group_name in to_delete:
                del cluster.nodes[node_id]
        for group in groups:
            if group["InstanceGroupName"] not in names:
                continue
            prefix = f"{group['InstanceGroupName']}-"
            mine = [n for n in cluster.nodes if n.startswith(prefix) and n[len(prefix) :].isdigit()]
            for node_id in mine:
                if int(node_id[len(prefix) :]) >= group["TargetCount"]:
                    del cluster.nodes[node_id]
            for i in range(group["TargetCount"]):
                node_id = f"{prefix}{i}"
                if node_id not in cluster.nodes:
                    cluster.nodes[node_id] = sm.ClusterNode(
                        region_name=backend.region_name,
                        account_id=backend.account_id,
                        cluster_name=name,
                        instance_group_name=group["InstanceGroupName"],
                        instance_type=group["InstanceType"],
                        life_cycle_config=group["LifeCycleConfig"],
                        execution_role=group.get("ExecutionRole", ""),
                        node_id=node_id,
                        threads_per_core=group.get("ThreadsPerCore"),
                    )
        return str(cluster.arn)

    def update_cluster_response(self: Any) -> ActionResult:
        arn = update_cluster(
            self.sagemaker_backend,
            cluster_name=self._get_param("ClusterName"),
            instance_groups=self._get_param("InstanceGroups") or [],
            to_delete=self._get_param("InstanceGroupsToDelete") or [],
        )
        return ActionResult({"ClusterArn": arn})

    # ---- Model packages -------------------------------------------------------------------------
    def version_marks(backend: Any) -> dict[str, int]:
        marks = backend.__dict__.setdefault("_mlplat_version_marks", {})
        return marks  # type: ignore[no-any-return]

    original_create_package = backend_cls.create_model_package

    def create_model_package(self: Any, **kwargs: Any) -> str:
        group = kwargs.get("model_package_group_name")
        if not group or kwargs.get("model_package_name") or group not in self.model_package_groups:
            return original_create_package(self, **kwargs)  # type: ignore[no-any-return]
        in_group = [
            p.model_package_version or 0 for p in self.model_packages.values() if p.model_package_group_name == group
        ]
        version = max([*in_group, version_marks(self).get(group, 0)]) + 1
        version_marks(self)[group] = version
        kw = {k: v for k, v in kwargs.items() if k != "model_package_name"}
        package = sm.ModelPackage(
            model_package_name=group,
            model_package_version=version,
            approval_description=None,
            region_name=self.region_name,
            account_id=self.account_id,
            model_package_type="Versioned",
            **kw,
        )
        self.model_package_name_mapping[package.model_package_name] = package.arn
        self.model_package_name_mapping[package.arn] = package.arn
        self.model_packages[package.arn] = package
        return str(package.arn)

    def delete_model_package(backend: Any, name: str) -> None:
        arn = name if name.startswith("arn:") else backend.model_package_name_mapping.get(name, "")
        package = backend.model_packages.get(arn)
        if package is None or (not name.startswith("arn:") and package.model_package_version):
            raise ValidationError(message=f"Model package {name} not found")
        del backend.model_packages[arn]
        for key, value in list(backend.model_package_name_mapping.items()):
            if value == arn:
                del backend.model_package_name_mapping[key]
        group = package.model_package_group_name
        if group:
            rest = [p for p in backend.model_packages.values() if p.model_package_group_name == group]
            if rest:
                latest = max(rest, key=lambda p: p.model_package_version or 0)
                backend.model_package_name_mapping[group] = latest.arn

    def delete_model_package_group(backend: Any, name: str) -> None:
        name = _name_from_arn(name)
        group = backend.model_package_groups.get(name)
        if group is None:
            raise ValidationError(message=f"ModelPackageGroup {name} does not exist.")
        if any(p.model_package_group_name == name for p in backend.model_packages.values()):
            raise ConflictException(
                f"Model Package Group {group.arn} contains model packages. Delete the model packages first."
            )
        del backend.model_package_groups[name]
        version_marks(backend).pop(name, None)

    def delete_model_package_response(self: Any) -> EmptyResult:
        delete_model_package(self.sagemaker_backend, self._get_param("ModelPackageName"))
        return EmptyResult()

    def delete_model_package_group_response(self: Any) -> EmptyResult:
        delete_model_package_group(self.sagemaker_backend, self._get_param("ModelPackageGroupName"))
        return EmptyResult()

    # ---- Tags on model package ARNs -------------------------------------------------------------
    original_get_resource = backend_cls._get_resource_from_arn

    def get_resource_from_arn(self: Any, arn: str) -> Any:
        if ":model-package/" in arn:
            package = self.model_packages.get(arn)
            if package is None:
                raise ValidationError(message=f"Could not find model-package with ARN {arn}")
            if package.tags is None:
                package.tags = []
            return package
        resource = original_get_resource(self, arn)
        if resource is None:
            raise ValidationError(message=f"Could not find resource with ARN {arn}")
        return resource

    backend_cls.create_endpoint = create_endpoint
    backend_cls.create_cluster = create_cluster
    backend_cls.update_endpoint_weights_and_capacities = update_endpoint_weights_and_capacities
    backend_cls.create_model_package = create_model_package
    backend_cls._get_resource_from_arn = get_resource_from_arn
    SageMakerResponse.create_endpoint_config = create_endpoint_config_response
    SageMakerResponse.update_endpoint = update_endpoint_response
    SageMakerResponse.update_cluster = update_cluster_response
    SageMakerResponse.delete_model_package = delete_model_package_response
    SageMakerResponse.delete_model_package_group = delete_model_package_group_response


# --------------------------------------------------------------------------------------------
# Monitoring: SageMaker Model Monitor, CloudWatch percentiles, SNS confirmations
# --------------------------------------------------------------------------------------------

_SAGEMAKER_MODEL: Any = None


def _sagemaker_model() -> Any:
    global _SAGEMAKER_MODEL
    if _SAGEMAKER_MODEL is None:
        _SAGEMAKER_MODEL = botocore.session.get_session().get_service_model("sagemaker")
    return _SAGEMAKER_MODEL


def _shape_violations(shape: Any, value: Any, path: str, found: list[str]) -> None:
    """What the service's own request validation reports for `value` against a botocore `shape`, in AWS's words
    ("Value 'x' at 'a.b' failed to satisfy constraint: ..."); botocore checks only required members and types."""
    meta = shape.metadata
    if value is None:
        return
    shown = value if not isinstance(value, (dict, list)) else "..."
    if shape.type_name == "structure":
        for name in shape.required_members:
            if value.get(name) is None:
                found.append(f"Value null at '{_member_path(path, name)}' failed to satisfy constraint: Member must "
                             "not be null")
        for name, member in shape.members.items():
            if name in value:
                _shape_violations(member, value[name], _member_path(path, name), found)
    elif shape.type_name == "list":
        _length_violations(meta, len(value), shown, path, found)
        for i, item in enumerate(value):
            _shape_violations(shape.member, item, f"{path}.{i + 1}.member", found)
    elif shape.type_name == "string":
        if "enum" in meta and value not in meta["enum"]:
            found.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must satisfy enum value "
                         f"set: [{', '.join(meta['enum'])}]")
            return
        _length_violations(meta, len(value), value, path, found)
        pattern = meta.get("pattern")
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:  # Java-only syntax (\p{L}): the service checks it, this fake does not
                return
            if not compiled.fullmatch(value):
                found.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must satisfy regular "
                             f"expression pattern: {pattern}")
    elif shape.type_name in ("integer", "long", "double", "float"):
        if "max" in meta and value > meta["max"]:
            found.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have value less "
                         f"than or equal to {meta['max']}")
        if "min" in meta and value < meta["min"]:
            found.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have value greater "
                         f"than or equal to {meta['min']}")


def _length_violations(meta: dict[str, Any], length: int, shown: Any, path: str, found: list[str]) -> None:
    if "max" in meta and length > meta["max"]:
        found.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: Member must have length less than "
                     f"or equal to {meta['max']}")
    if "min" in meta and length < meta["min"]:
        found.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: Member must have length greater "
                     f"than or equal to {meta['min']}")


def _member_path(path: str, name: str) -> str:
    camel = name[0].lower() + name[1:]
    return f"{path}.{camel}" if path else camel


def _check_request(operation: str, params: dict[str, Any], members: Iterable[str] | None = None) -> None:
    """Raise SageMaker's ValidationException for what `params` break of `operation`'s input constraints (all
    members, or only `members`)."""
    from moto.sagemaker.exceptions import ValidationError

    shape = _sagemaker_model().operation_model(operation).input_shape
    found: list[str] = []
    if members is None:
        _shape_violations(shape, params, "", found)
    else:
        for name in members:
            _shape_violations(shape.members[name], params.get(name), _member_path("", name), found)
    if found:
        count = f"{len(found)} validation error{'s' if len(found) > 1 else ''} detected: "
        raise ValidationError(message=count + "; ".join(found))


def _output_of(operation: str, document: dict[str, Any]) -> dict[str, Any]:
    """`document` cut to the members of `operation`'s output, without empty values (the API leaves them out)."""
    members = _sagemaker_model().operation_model(operation).output_shape.members
    return {k: v for k, v in document.items() if k in members and v not in (None, {}, [])}


#: ScheduleExpression forms CreateMonitoringSchedule accepts (API reference, ScheduleConfig): hourly, daily at an
#: hour, every N hours from an hour, or NOW (a one-off run, which needs the analysis window)
_CRON = re.compile(r"cron\(0 (\*|([01]?[0-9]|2[0-3])(/([1-9]|1[0-9]|2[0-4]))?) \? \* \* \*\)")


@dataclass
class _MonitoringSchedule:
    name: str
    arn: str
    config: dict[str, Any]
    endpoint: str | None
    tags: list[dict[str, str]]
    status: str = "Pending"
    created: datetime = dataclasses.field(default_factory=_now)
    modified: datetime = dataclasses.field(default_factory=_now)

    @property
    def monitoring_type(self) -> str:
        return str(self.config.get("MonitoringType") or "DataQuality")

    def summary(self) -> dict[str, Any]:
        out = {"MonitoringScheduleName": self.name, "MonitoringScheduleArn": self.arn, "CreationTime": self.created,
               "LastModifiedTime": self.modified, "MonitoringScheduleStatus": self.status,
               "MonitoringType": self.monitoring_type, "EndpointName": self.endpoint,
               "MonitoringJobDefinitionName": self.config.get("MonitoringJobDefinitionName")}
        return {k: v for k, v in out.items() if v is not None}


def _install_sagemaker_monitoring() -> None:
    """SageMaker Model Monitor as its API reference says, where moto 5.2.5 differs or has nothing (see the module
    docstring). The exact message texts of refusals SageMaker does not document are this fake's own."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.sagemaker import models as sm
    from moto.sagemaker.exceptions import ResourceInUseException, ResourceNotFound, ValidationError
    from moto.sagemaker.responses import SageMakerResponse

    backend_cls = sm.SageMakerModelBackend

    # ---- DataCaptureConfig -------------------------------------------------------------------
    original_create_config = SageMakerResponse.create_endpoint_config

    def create_endpoint_config(self: Any) -> ActionResult:
        _check_request("CreateEndpointConfig", self._get_params(), ["DataCaptureConfig"])
        return original_create_config(self)

    def describe_endpoint_config(self: Any) -> ActionResult:
        out = dict(self.sagemaker_backend.describe_endpoint_config(self._get_param("EndpointConfigName")))
        if not out.get("DataCaptureConfig"):  # the API leaves it out of a config without one
            out.pop("DataCaptureConfig", None)
        return ActionResult(out)

    endpoint_response = sm.FakeEndpoint.response_object

    def endpoint_object(self: Any) -> dict[str, Any]:
        out = dict(endpoint_response.fget(self))
        capture = out.pop("DataCaptureConfig", None)
        if capture:  # DescribeEndpoint reports a DataCaptureConfigSummary, not the config's DataCaptureConfig
            enabled = capture.get("EnableCapture", True)
            summary = {"EnableCapture": enabled, "CaptureStatus": "Started" if enabled else "Stopped",
                       "CurrentSamplingPercentage": capture["InitialSamplingPercentage"],
                       "DestinationS3Uri": capture["DestinationS3Uri"], "KmsKeyId": capture.get("KmsKeyId")}
            out["DataCaptureConfig"] = {k: v for k, v in summary.items() if v is not None}
        return out

    # ---- data-quality job definitions -------------------------------------------------------------
    def endpoint_of_job(job: Any) -> str | None:
        for attr, value in vars(job).items():
            if attr.endswith("_job_input") and isinstance(value, dict):
                return (value.get("EndpointInput") or {}).get("EndpointName")
        return None

    def schedules(backend: Any) -> dict[str, _MonitoringSchedule]:
        found: dict[str, _MonitoringSchedule] = backend.__dict__.setdefault("_mlplat_monitoring_schedules", {})
        return found

    original_create_job = SageMakerResponse.create_data_quality_job_definition

    def create_data_quality_job_definition(self: Any) -> ActionResult:
        params = self._get_params()
        _check_request("CreateDataQualityJobDefinition", params)
        job_input = params["DataQualityJobInput"]
        if len([k for k in ("EndpointInput", "BatchTransformInput") if job_input.get(k)]) != 1:
            raise ValidationError(message="DataQualityJobInput must have exactly one of EndpointInput and "
                                          "BatchTransformInput.")
        backend = self.sagemaker_backend
        name = params["JobDefinitionName"]
        if name in backend.data_quality_job_definitions:
            arn = sm.FakeDataQualityJobDefinition.arn_formatter(name, backend.account_id, backend.region_name)
            raise ResourceInUseException(f"Job definition {arn} already exists.")
        result = original_create_job(self)
        job = backend.data_quality_job_definitions[name]
        if not job.stopping_condition:  # the API's default (MonitoringStoppingCondition)
            job.stopping_condition = {"MaxRuntimeInSeconds": 3600}
        return result

    def describe_data_quality_job_definition(self: Any) -> ActionResult:
        name = self._get_param("JobDefinitionName")
        job = self.sagemaker_backend.data_quality_job_definitions.get(name)
        if job is None:
            raise ResourceNotFound(f"Job definition {name} does not exist.")
        document = {"JobDefinitionArn": job.arn, "JobDefinitionName": job.job_definition_name,
                    "CreationTime": job.creation_time, "DataQualityBaselineConfig": job.data_quality_baseline_config,
                    "DataQualityAppSpecification": job.data_quality_app_specification,
                    "DataQualityJobInput": job.data_quality_job_input,
                    "DataQualityJobOutputConfig": job.data_quality_job_output_config,
                    "JobResources": job.job_resources, "NetworkConfig": job.network_config, "RoleArn": job.role_arn,
                    "StoppingCondition": job.stopping_condition}
        return ActionResult(_output_of("DescribeDataQualityJobDefinition", document))

    def list_data_quality_job_definitions(self: Any) -> ActionResult:
        params = self._get_params()
        jobs = list(self.sagemaker_backend.data_quality_job_definitions.values())
        if params.get("EndpointName"):
            jobs = [j for j in jobs if endpoint_of_job(j) == params["EndpointName"]]
        if params.get("NameContains"):
            jobs = [j for j in jobs if params["NameContains"] in j.job_definition_name]
        key = (lambda j: j.job_definition_name) if params.get("SortBy") == "Name" else (lambda j: j.creation_time)
        jobs.sort(key=key, reverse=params.get("SortOrder", "Descending") == "Descending")
        summaries = [{"MonitoringJobDefinitionName": j.job_definition_name, "MonitoringJobDefinitionArn": j.arn,
                      "CreationTime": j.creation_time, "EndpointName": endpoint_of_job(j) or ""} for j in jobs]
        page, token = _page(summaries, params)
        return ActionResult({"JobDefinitionSummaries": page, **({"NextToken": token} if token else {})})

    def delete_data_quality_job_definition(self: Any) -> EmptyResult:
        name = self._get_param("JobDefinitionName")
        backend = self.sagemaker_backend
        if name not in backend.data_quality_job_definitions:
            raise ResourceNotFound(f"Job definition {name} does not exist.")
        users = [s.name for s in schedules(backend).values() if s.config.get("MonitoringJobDefinitionName") == name
                 and s.monitoring_type == "DataQuality"]
        if users:
            raise ValidationError(message=f"Job definition {name} is used by monitoring schedule(s) "
                                          f"{', '.join(sorted(users))}; delete them first.")
        del backend.data_quality_job_definitions[name]
        return EmptyResult()

    # ---- monitoring schedules ---------------------------------------------------------------------
    job_stores = {"DataQuality": "data_quality_job_definitions", "ModelQuality": "model_quality_job_definitions",
                  "ModelBias": "model_bias_job_definitions",
                  "ModelExplainability": "model_explainability_job_definitions"}

    def checked_config(backend: Any, operation: str, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The schedule config as the API stores it, and the endpoint it monitors; refusals as SageMaker's."""
        _check_request(operation, params)
        config = json.loads(json.dumps(params["MonitoringScheduleConfig"]))
        inline, named = config.get("MonitoringJobDefinition"), config.get("MonitoringJobDefinitionName")
        if bool(inline) == bool(named):
            raise ValidationError(message="MonitoringScheduleConfig must have exactly one of MonitoringJobDefinition "
                                          "and MonitoringJobDefinitionName.")
        expression = (config.get("ScheduleConfig") or {}).get("ScheduleExpression")
        if expression is not None and not _CRON.fullmatch(expression):
            if expression != "NOW":
                raise ValidationError(message=f"Invalid ScheduleExpression {expression}: use cron(0 * ? * * *), "
                                              "cron(0 H ? * * *), cron(0 H/N ? * * *) or NOW.")
            window = config["ScheduleConfig"]
            if not (window.get("DataAnalysisStartTime") and window.get("DataAnalysisEndTime")):
                raise ValidationError(message="DataAnalysisStartTime and DataAnalysisEndTime are required when "
                                              "ScheduleExpression is NOW.")
        if named:
            kind = config.get("MonitoringType")
            if kind is None:
                raise ValidationError(message="MonitoringType is required with MonitoringJobDefinitionName.")
            job = getattr(backend, job_stores[kind]).get(named)
            if job is None:
                raise ValidationError(message=f"Could not find {kind} job definition {named}.")
            endpoint = endpoint_of_job(job)
        else:
            config.setdefault("MonitoringType", "DataQuality")
            inputs = inline.get("MonitoringInputs") or [{}]
            endpoint = (inputs[0].get("EndpointInput") or {}).get("EndpointName")
        if endpoint is not None:
            live = backend.endpoints.get(endpoint)
            if live is None:
                arn = sm.FakeEndpoint.arn_formatter(endpoint, backend.account_id, backend.region_name)
                raise ValidationError(message=f"Could not find endpoint '{arn}'.")
            capture = live.data_capture_config or {}
            if not capture or not capture.get("EnableCapture", True):
                raise ValidationError(message=f"Endpoint {endpoint} does not have data capture enabled: monitoring "
                                              "reads captured data (DataCaptureConfig).")
        return config, endpoint

    def schedule_named(backend: Any, name: str) -> _MonitoringSchedule:
        found = schedules(backend).get(name)
        if found is None:
            raise ResourceNotFound(f"Monitoring Schedule {name} does not exist.")
        return found

    def create_monitoring_schedule(self: Any) -> ActionResult:
        backend, params = self.sagemaker_backend, self._get_params()
        name = params.get("MonitoringScheduleName")
        arn = sm.arn_formatter("monitoring-schedule", str(name), backend.account_id, backend.region_name)
        config, endpoint = checked_config(backend, "CreateMonitoringSchedule", params)
        if name in schedules(backend):
            raise ResourceInUseException(f"Monitoring Schedule {arn} already exists.")
        schedules(backend)[name] = _MonitoringSchedule(name, arn, config, endpoint, list(params.get("Tags") or []))
        return ActionResult({"MonitoringScheduleArn": arn})

    def describe_monitoring_schedule(self: Any) -> ActionResult:
        schedule = schedule_named(self.sagemaker_backend, self._get_param("MonitoringScheduleName"))
        status = schedule.status
        if status == "Pending":  # scheduled by the time anyone asks again
            schedule.status = "Scheduled"
        document = {**schedule.summary(), "MonitoringScheduleStatus": status,
                    "MonitoringScheduleConfig": schedule.config}
        return ActionResult(_output_of("DescribeMonitoringSchedule", document))

    def update_monitoring_schedule(self: Any) -> ActionResult:
        backend, params = self.sagemaker_backend, self._get_params()
        schedule = schedule_named(backend, params.get("MonitoringScheduleName"))
        config, endpoint = checked_config(backend, "UpdateMonitoringSchedule", params)
        if schedule.status == "Pending":
            raise ValidationError(message=f"Monitoring schedule {schedule.name} in status Pending cannot be updated.")
        schedule.config, schedule.endpoint, schedule.status, schedule.modified = config, endpoint, "Pending", _now()
        return ActionResult({"MonitoringScheduleArn": schedule.arn})

    def delete_monitoring_schedule(self: Any) -> EmptyResult:
        backend = self.sagemaker_backend
        schedule = schedule_named(backend, self._get_param("MonitoringScheduleName"))
        if schedule.status == "Pending":
            raise ValidationError(message="Monitoring schedule in status Pending")
        del schedules(backend)[schedule.name]
        return EmptyResult()

    def list_monitoring_schedules(self: Any) -> ActionResult:
        params = self._get_params()
        found = list(schedules(self.sagemaker_backend).values())
        filters = {"EndpointName": lambda s: s.endpoint, "StatusEquals": lambda s: s.status,
                   "MonitoringTypeEquals": lambda s: s.monitoring_type,
                   "MonitoringJobDefinitionName": lambda s: s.config.get("MonitoringJobDefinitionName")}
        for param, of in filters.items():
            if params.get(param):
                found = [s for s in found if of(s) == params[param]]
        if params.get("NameContains"):
            found = [s for s in found if params["NameContains"] in s.name]
        sort = params.get("SortBy", "CreationTime")
        key = {"Name": lambda s: s.name, "Status": lambda s: s.status}.get(sort, lambda s: s.created)
        found.sort(key=key, reverse=params.get("SortOrder", "Descending") == "Descending")
        page, token = _page([s.summary() for s in found], params)
        return ActionResult({"MonitoringScheduleSummaries": page, **({"NextToken": token} if token else {})})

    # ---- tags on schedule ARNs ----------------------------------------------------------------------
    original_get_resource = backend_cls._get_resource_from_arn

    def get_resource_from_arn(self: Any, arn: str) -> Any:
        if ":monitoring-schedule/" in arn:
            schedule = schedules(self).get(arn.rsplit("/", 1)[-1])
            if schedule is None:
                raise ValidationError(message=f"Could not find monitoring-schedule with ARN {arn}")
            return schedule
        return original_get_resource(self, arn)

    backend_cls._get_resource_from_arn = get_resource_from_arn
    SageMakerResponse.describe_endpoint_config = describe_endpoint_config
    sm.FakeEndpoint.response_object = property(endpoint_object)
    SageMakerResponse.create_endpoint_config = create_endpoint_config
    SageMakerResponse.create_data_quality_job_definition = create_data_quality_job_definition
    SageMakerResponse.describe_data_quality_job_definition = describe_data_quality_job_definition
    SageMakerResponse.list_data_quality_job_definitions = list_data_quality_job_definitions
    SageMakerResponse.delete_data_quality_job_definition = delete_data_quality_job_definition
    SageMakerResponse.create_monitoring_schedule = create_monitoring_schedule
    SageMakerResponse.describe_monitoring_schedule = describe_monitoring_schedule
    SageMakerResponse.update_monitoring_schedule = update_monitoring_schedule
    SageMakerResponse.delete_monitoring_schedule = delete_monitoring_schedule
    SageMakerResponse.list_monitoring_schedules = list_monitoring_schedules


def _page(items: list[dict[str, Any]], params: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a SageMaker list (MaxResults, default 10, and an opaque NextToken)."""
    start = int(params.get("NextToken") or 0)
    size = int(params.get("MaxResults") or 10)
    end = start + size
    return items[start:end], (str(end) if end < len(items) else None)


def _install_cloudwatch_percentiles() -> None:
    """Percentile statistics (p0 to p100, e.g. p95, p99.9) in GetMetricData, as CloudWatch computes them from raw
    values (nearest rank); none for a period holding statistic sets, which carry no raw values. moto answers any
    percentile with null."""
    from moto.cloudwatch import models as cw

    percentile = re.compile(r"p(100|[0-9]{1,2}(\.[0-9]{1,10})?)")
    original_stat = cw.Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Any, stat: str) -> Any:
        match = percentile.fullmatch(stat)
        if match is None:
            return original_stat(self, stat)
        values = sorted(self.metric_single_values_list)
        if not values or self.metric_aggregated_list:
            return None
        rank = max(1, -(-float(match.group(1)) * len(values) // 100))
        return values[int(rank) - 1]

    original_data = cw.CloudWatchBackend.get_metric_data

    def get_metric_data(self: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = original_data(self, *args, **kwargs)
        for result in results:  # a period with no value for the statistic has no datapoint
            kept = [(v, t) for v, t in zip(result["values"], result["timestamps"], strict=True) if v is not None]
            result["values"], result["timestamps"] = [v for v, _ in kept], [t for _, t in kept]
        return results

    cw.Statistics.get_statistics_for_type = get_statistics_for_type
    cw.CloudWatchBackend.get_metric_data = get_metric_data


#: SNS protocols whose subscriptions wait for the endpoint to confirm (the SubscribeURL sent to it)
_CONFIRMED_BY_ENDPOINT = ("email", "email-json", "http", "https")


def _install_sns_confirmation() -> None:
    """SNS as its API reference says: an e-mail or http(s) subscription is pending until its endpoint confirms it;
    Subscribe answers "pending confirmation" (its ARN only with ReturnSubscriptionArn), lists show its
    SubscriptionArn as "PendingConfirmation". CreateTopic of
    an existing name with other tags is InvalidParameter. `confirm_all` stands for the recipients confirming.
    (Unsubscribe of a pending subscription, which SNS refuses, is left as moto has it.)"""
    from moto.core.responses import ActionResult
    from moto.sns import models as sns
    from moto.sns.exceptions import SNSInvalidParameter
    from moto.sns.responses import SNSResponse

    original_subscribe = sns.SNSBackend.subscribe

    def subscribe(self: Any, topic_arn: str, endpoint: str, protocol: str) -> Any:
        existing = self._find_subscription(topic_arn, endpoint, protocol)
        subscription = original_subscribe(self, topic_arn, endpoint, protocol)
        if existing is None and protocol in _CONFIRMED_BY_ENDPOINT:
            subscription.attributes["PendingConfirmation"] = "true"
            subscription.attributes["ConfirmationWasAuthenticated"] = "false"
        return subscription

    def pending(subscription: Any) -> bool:
        return str(subscription.attributes.get("PendingConfirmation")).lower() == "true"

    def listed(subscriptions: list[Any]) -> list[dict[str, Any]]:
        return [{"SubscriptionArn": "PendingConfirmation" if pending(s) else s.arn, "Owner": s.account_id,
                 "Protocol": s.protocol, "Endpoint": s.endpoint, "TopicArn": s.topic.arn} for s in subscriptions]

    def subscribe_response(self: Any) -> ActionResult:
        result = original_subscribe_response(self)
        subscription = self.backend.subscriptions.get(result.result["SubscriptionArn"])  # type: ignore[index]
        wants_arn = str(self._get_param("ReturnSubscriptionArn", "")).lower() == "true"
        if subscription is not None and pending(subscription) and not wants_arn:
            return ActionResult({"SubscriptionArn": "pending confirmation"})
        return result

    def list_by_topic_response(self: Any) -> ActionResult:
        subscriptions, token = self.backend.list_subscriptions_by_topic(self._get_param("TopicArn"),
                                                                        next_token=self._get_param("NextToken"))
        return ActionResult({"Subscriptions": listed(subscriptions), "NextToken": token})

    def list_response(self: Any) -> ActionResult:
        subscriptions, token = self.backend.list_subscriptions(next_token=self._get_param("NextToken"))
        return ActionResult({"Subscriptions": listed(subscriptions), "NextToken": token})

    original_create_topic = sns.SNSBackend.create_topic

    def create_topic(self: Any, name: str, attributes: dict[str, str] | None = None,
                     tags: dict[str, str] | None = None) -> Any:
        for topic in self.topics.values():
            if topic.name == name and tags and dict(topic._tags or {}) != dict(tags):
                raise SNSInvalidParameter("Invalid parameter: Tags Reason: Topic already exists with different tags")
        return original_create_topic(self, name, attributes, tags)

    original_subscribe_response = SNSResponse.subscribe
    sns.SNSBackend.subscribe = subscribe
    sns.SNSBackend.create_topic = create_topic
    SNSResponse.subscribe = subscribe_response
    SNSResponse.list_subscriptions_by_topic = list_by_topic_response
    SNSResponse.list_subscriptions = list_response


def confirm_all(region: str = REGION, account: str = "123456789012") -> int:
    """Confirm every pending SNS subscription (what the recipients' clicks on their confirmation links do);
    returns how many were confirmed."""
    from moto.sns.models import sns_backends

    confirmed = 0
    for subscription in sns_backends[account][region].subscriptions.values():
        if str(subscription.attributes.get("PendingConfirmation")).lower() == "true":
            subscription.attributes["PendingConfirmation"] = "false"
            subscription.attributes["ConfirmationWasAuthenticated"] = "true"
            subscription.confirmed = True
            confirmed += 1
    return confirmed
