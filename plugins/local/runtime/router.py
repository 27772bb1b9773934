"""Router: one endpoint in front of weighted upstreams (an endpoint's model servers, or, as a front door, whole
endpoints on any target).

    python -m mlplat_plugins.local.runtime.router --config FILE --runtime-file FILE
        [--host 127.0.0.1] [--port 0] [--internal-token-file FILE] [--kind router|front_door] [--quiet]

Config file (JSON)::

    {"endpoint": "iris", "mode": "split" | "shadow",
     "routes": [{"path": "production", "url": "http://127.0.0.1:PORT", "weight": 80, "internal": true},
                {"path": "aws", "url": "https://host/endpoints/iris", "weight": 20,
                 "sign": {"kind": "sigv4", "service": "sagemaker", "region": "us-east-1", "profile": null},
                 "api_key_file": "/abs/path/0600-file"}],
     "mirror_percent": 100,      # optional, shadow mode only, default 100
     "timeout_s": 30,            # optional upstream timeout, default 30
     "key_sha256": null,         # optional: clients must send the key with this SHA-256
     "capture": {"dir": "/abs/dir", "sample_percent": 20, "request": true, "response": true},  # optional
     "compare_shadow": true}     # optional, default false

A route's ``url`` is http or https, with an optional path prefix put before the request path. Optional per route:
``internal`` (true: the upstream is one of our own model servers on loopback, and gets the internal token; no
other upstream ever does), ``sign`` (SigV4-sign every request with the standard AWS credential chain, botocore
imported only then; or ``{"kind": "google"}``: a bearer token from Google's Application Default Credentials, and the
route's URL is the whole request target, a Vertex AI endpoint's ``…:rawPredict``; or ``{"kind": "azure", "auth":
"key" | "aad_token", "connect_to": null}``: the api key, or an Entra ID token from DefaultAzureCredential, as a
bearer token to an Azure ML scoring URI, the whole target; ``connect_to`` (tests) connects to another server, the
URL's host sent as Host and ``X-Mlplat-Original-Host``) and ``api_key_file`` (an absolute path to a file only its
owner can read, holding a key sent as ``X-Api-Key``; the config never holds a key).

split:  each request goes to one route, chosen by weight.
shadow: each request is served by a route with weight > 0 (chosen by weight; normally production at 100);
        every weight-0 route additionally receives a copy of ``mirror_percent`` % of the requests. Copies
        are sent after the caller has its response, by a bounded worker pool; they are dropped when the
        queue is full and their failures are ignored (with ``compare_shadow``, answered ones are compared).

Every forwarded response carries ``X-Mlplat-Path`` naming this router's route that served it (one from the
upstream, a router behind this one, is replaced; its ``X-Mlplat-Model`` passes through). An unreachable upstream
gives 502 ``{"error": ..., "path": ...}``. Internal endpoints: ``GET /-/healthz``, ``GET /-/config`` (the active
config), ``GET /-/stats``: ``counts``, ``health`` (below) and, per route path, ``routes`` = ``{"requests",
"errors", "latency_ms_buckets"}`` counted since the process started, across reloads. ``requests`` counts every
request routed there (mirror copies are in ``counts`` only), ``errors`` those answered 5xx by the upstream or 502
by the router (unreachable, timed out, not signable; an attempt retried on another route counts here too);
``latency_ms_buckets`` is a plain histogram of the upstream round trip: each attempt is counted once, under the
smallest bound (ms: 5, 10, 25, ... 10000, "inf") at or above it.
SIGHUP re-reads the config file (and the key files) and swaps it in atomically: requests already running finish on
the old config and no socket is closed. A config that fails to load is logged and the old one kept. Write the
config file atomically (write + rename).

With ``--internal-token-file`` the router sends that token (``X-Mlplat-Internal``) to ``internal`` routes, its own
model servers, which refuse requests without it; a token a client sends is never forwarded, nor are a client's
``Authorization`` and ``X-Api-Key``.

Health of internal routes. A background thread per ``internal`` route asks its ``GET /-/healthz`` every 0.25 s (0.5
s timeout, a fresh connection each time, never one of the request pool's; it carries the internal token, as
everything sent to an internal route does, though a model server asks none there). A failed check (no answer, or not
200), or a connection failure of a real request (refused, reset, closed without an answer; not a timeout, not a 5xx
answer), marks the route down at once; a passing check marks it up again; each transition is one line in the log.
Marking a route down also cuts the requests waiting on it (a supervised model server's port keeps accepting while it
restarts, so a request sent just before its death would wait for the restart): they fail as connection failures, and
are retried like them. A request goes to one of the *live* routes with weight > 0, chosen by weight among them. A
request whose connection to an internal route fails is retried once on another live route with weight > 0, if there
is one (predictions have no side effects); only when that fails too, or there is none, the caller gets the 502. When
no route with weight > 0 is live the caller gets 503 ``{"error": "no live path for endpoint 'iris': production is
down (its model server is restarting or stopped)", "paths": {path: health}}`` with ``Retry-After: 1``. Routes that
are not internal (a front door's upstreams) are never health-checked, marked down or retried. ``/-/stats``
``health`` holds, per internal route path, ``{"up": bool, "changed": unix time of the last transition (or of when
the route appeared), "downs": int}``; ``counts`` gains ``retried.<path>`` (failed attempts retried elsewhere) and
``no_live_path`` (503s).

Capture (``capture``): of the requests answered by an upstream through a route with weight > 0 (not internal
paths, not mirror copies, not the router's own 502/503) exactly ``sample_percent`` % are kept, spread evenly
(error diffusion over a counter of this process: of 5,000 requests at 20 %, 1,000). Each becomes a row
(``provisioner.monitoring``: ts (when the request came), id, endpoint, path, status, latency_ms (the answering
upstream's round trip), and the parsed JSON ``request`` / ``response`` bodies where ``request`` / ``response`` say
so; a body that is not JSON is kept as ``{"text": ...}``, its first 64 KiB) appended to
``<dir>/capture-YYYYMMDD-HH.jsonl`` (UTC hour of ts; file 0600, the directory made 0700 when missing). The request
never waits for the disk: its handler puts the raw bodies on a bounded queue (10,000 rows, 64 MiB of bodies) after
the caller has the response; one writer thread wakes for the first row, takes those queued in the next 50 ms (and
any coming while it works) as one batch, and appends them as whole lines, one write per file (in a backlog, one per
1,000 rows): rows are on disk about 0.1 s after their request. A row that finds the queue full is dropped and
counted (``mlplat_capture_dropped_total``), as are rows a write fails for (logged at most once a minute). The queue
is written out on shutdown (SIGTERM).

Shadow comparison (``compare_shadow``, shadow mode): the copy of a request carries the primary's answer; once the
mirror route has answered it, the two are compared (``provisioner.monitoring.agreement`` on the parsed bodies
when both are 200) into a shadow pair row (ts, id (a captured request's row has the same), endpoint, primary,
shadow, statuses, round trips in ms, instances, agreements), written to ``<capture dir>/shadow-YYYYMMDD-HH.jsonl``
by the same writer when ``capture`` gives a directory, and counted in the shadow metrics either way. A copy that
got no answer, or of a request the primary did not answer, makes no pair.

``GET /metrics``: Prometheus text format 0.0.4 (``metrics.py`` names; the API key is asked as for every path but
``/-/healthz``): ``mlplat_requests_total{endpoint,path,code}`` (requests answered to callers: by the route that
answered and the status the caller got; ``path="-"`` for the 503 of no live path),
``mlplat_request_errors_total{endpoint,path}`` (as ``errors`` above: failed attempts, a retried one too; and the
503s, ``path="-"``), ``mlplat_request_duration_seconds`` (each attempt's upstream round trip),
``mlplat_upstream_up`` (internal routes), ``mlplat_captured_rows_total`` and ``mlplat_capture_dropped_total``,
``mlplat_shadow_pairs_total`` / ``_instances_total`` / ``_agreements_total`` and the
``mlplat_shadow_latency_delta_seconds`` summary (shadow minus primary round trip) by mirror route path, the process
and GPU metrics, and ``mlplat_drift_score{endpoint,feature,metric}`` read at each scrape from
``<capture dir>/drift-scores.json`` (``{"ts": ..., "scores": [{"feature", "metric", "value"}]}``, written by
``mlplat monitor``; a missing or malformed file shows none).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import hmac
import http.client
import json
import math
import os
import queue
import random
import re
import socket
import ssl
import stat
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provisioner.monitoring import SCORES_FILE, agreement

from . import metrics
from .capture import CaptureRow, CaptureWriter, ShadowRow, parsed
from .processes import (
    HEALTH_PATH,
    INTERNAL_HEADER,
    BaseHandler,
    HTTPError,
    RuntimeServer,
    block_signals,
    is_loopback,
    read_token,
    serve,
)

MODES = ("split", "shadow")
KINDS = ("router", "front_door")
MIRROR_WORKERS = 4
MIRROR_QUEUE = 256
POOL_MAX_IDLE = 32
#: upper bounds (ms) of the latency histogram in /-/stats; a last bucket, "inf", takes the rest
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
SIGN_KEYS = frozenset({"kind", "service", "region", "profile", "auth", "connect_to"})
ROUTE_KEYS = frozenset({"path", "url", "weight", "internal", "sign", "api_key_file"})
CAPTURE_KEYS = frozenset({"dir", "sample_percent", "request", "response"})
#: internal routes: /-/healthz every HEALTH_INTERVAL_S seconds, each check given HEALTH_TIMEOUT_S
HEALTH_INTERVAL_S = 0.25
HEALTH_TIMEOUT_S = 0.5
#: the `path` label of requests no route answered (503: no live path)
NO_PATH = "-"


class ConfigError(ValueError):
    """An invalid router config."""


class UpstreamAborted(ConnectionAbortedError):
    """A request cut because its internal route was marked down while it waited (`Pool.abort`)."""


class SigningError(Exception):
    """A request that cannot be signed (no AWS credentials, an unknown profile)."""


# Headers that describe one connection, not the message (RFC 9110 7.6.1), plus the ones we recompute.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
    }
)
_NOT_RETURNED = _HOP_BY_HOP | {"content-type", "date", "server", "x-mlplat-path"}
#: the caller's credentials stay at the router; an internal token only the router itself may send
_NOT_FORWARDED = frozenset({"authorization", "x-api-key", INTERNAL_HEADER.lower()})


# ---------------------------------------------------------------------------------------------------------
# Upstream connections
# ---------------------------------------------------------------------------------------------------------

#: what a kept-alive connection the upstream closed while idle raises on reuse (TLS adds its own EOFs)
_STALE = (ConnectionError, http.client.BadStatusLine, ssl.SSLEOFError, ssl.SSLZeroReturnError)


class Pool:
    """Keep-alive connections to one upstream (http or https), reused across requests and threads."""

    def __init__(self, host: str, port: int, timeout: float, scheme: str = "http",
                 context: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.timeout, self.scheme = host, port, timeout, scheme
        self.context = (context or ssl.create_default_context()) if scheme == "https" else None
        self._idle: list[http.client.HTTPConnection] = []
        self._busy: set[http.client.HTTPConnection] = set()  # connections a request is using right now
        self._aborted: set[int] = set()  # ids of busy connections `abort` cut
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> http.client.HTTPConnection:
        if self.context is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _acquire(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            conn, reused = (self._idle.pop(), True) if self._idle else (self._connect(), False)
            self._busy.add(conn)
            return conn, reused

    def _done(self, conn: http.client.HTTPConnection) -> bool:
        """`conn` is no longer in use; whether `abort` cut it meanwhile."""
        with self._lock:
            self._busy.discard(conn)
            if id(conn) in self._aborted:
                self._aborted.discard(id(conn))
                return True
            return False

    def abort(self) -> int:
        """Cut every connection a request is waiting on (its upstream was found dead: a request queued in a
        restarting server's backlog would otherwise wait for the restart); those requests raise
        `UpstreamAborted`, which the caller may retry elsewhere. Returns how many were cut."""
        with self._lock:
            busy = list(self._busy)
            self._aborted.update(id(conn) for conn in busy)
        for conn in busy:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        return len(busy)

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < POOL_MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close idle connections; ones still in use are closed when released."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """One request/response. A pooled connection the upstream closed while idle is retried once on
        a fresh one (so a request may reach an upstream twice if it died mid-response); any other
        failure raises (OSError or http.client.HTTPException)."""
        while True:
            conn, reused = self._acquire()
            try:
                conn.request(method, target, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except _STALE as exc:
                conn.close()
                if self._done(conn):
                    raise UpstreamAborted(f"cut: the upstream was found dead ({exc or type(exc).__name__})") from exc
                if reused:
                    continue  # stale keep-alive connection; the next one may be stale too, or fresh
                raise
            except BaseException as exc:
                conn.close()
                if self._done(conn) and isinstance(exc, OSError):
                    raise UpstreamAborted(f"cut: the upstream was found dead ({exc})") from exc
                raise
            if self._done(conn) or resp.will_close:  # cut after its answer was read: not reusable
                conn.close()
            else:
                self._release(conn)
            return resp.status, resp.getheaders(), data


class Signer:
    """SigV4 for one (service, region, profile). The botocore session's credentials are resolved on first use
    (the standard chain) and kept, so refreshable ones refresh themselves; each request is signed with a frozen
    snapshot of them."""

    def __init__(self, service: str, region: str, profile: str | None) -> None:
        self.service, self.region, self.profile = service, region, profile
        self._credentials: Any = None
        self._lock = threading.Lock()

    def _resolve(self) -> Any:
        with self._lock:
            if self._credentials is None:
                import botocore.session

                try:
                    credentials = botocore.session.Session(profile=self.profile).get_credentials()
                except Exception as exc:  # botocore's own (ProfileNotFound, a broken config file)
                    raise SigningError(f"cannot load AWS credentials: {exc}") from None
                if credentials is None:
                    where = f"profile {self.profile!r}" if self.profile else "the standard AWS credential chain"
                    raise SigningError(f"no AWS credentials found in {where}")
                self._credentials = credentials
            return self._credentials

    def sign(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        """`headers` plus Authorization, X-Amz-Date (and X-Amz-Security-Token) for this request."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        try:
            frozen = self._resolve().get_frozen_credentials()
        except SigningError:
            raise
        except Exception as exc:  # a refresh that failed
            raise SigningError(f"cannot refresh AWS credentials: {exc}") from None
        request = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(frozen, self.service, self.region).add_auth(request)
        return dict(request.headers.items())


class GoogleSigner:
    """An OAuth 2.0 bearer token from Google's Application Default Credentials (google-auth imported only then),
    refreshed when it expires: what a Vertex AI endpoint wants of every request."""

    SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)

    def __init__(self) -> None:
        self._credentials: Any = None
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            try:
                import google.auth
                import google.auth.transport.requests

                if self._credentials is None:
                    self._credentials, _ = google.auth.default(scopes=list(self.SCOPES))
                if not self._credentials.valid:
                    self._credentials.refresh(google.auth.transport.requests.Request())
                return str(self._credentials.token)
            except Exception as exc:  # no ADC, a refused refresh, google-auth missing
                raise SigningError(f"cannot get a Google OAuth token from Application Default Credentials: "
                                   f"{exc}") from None

    def sign(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "Authorization": f"Bearer {self.token()}"}


class AzureSigner:
    """An Azure ML online endpoint's credentials: its key (the route's api_key) as a bearer token, or for
    `aad_token` endpoints an Entra ID token from DefaultAzureCredential (azure-identity imported only then)."""

    SCOPE = "https://ml.azure.com/.default"

    def __init__(self, auth: str) -> None:
        self.auth = auth
        self._credential: Any = None
        self._token: Any = None
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            try:
                if self._token is None or self._token.expires_on - 60 < time.time():
                    if self._credential is None:
                        from azure.identity import DefaultAzureCredential

                        self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
                    self._token = self._credential.get_token(self.SCOPE)
                return str(self._token.token)
            except Exception as exc:  # no credential found, a refused token request, azure-identity missing
                raise SigningError(f"cannot get an Entra ID token from DefaultAzureCredential: {exc}") from None

    def sign(self, method: str, url: str, body: bytes, headers: dict[str, str], api_key: str | None = None
             ) -> dict[str, str]:
        out = {k: v for k, v in headers.items() if k != "X-Api-Key"}
        if self.auth == "key":
            if not api_key:
                raise SigningError("the Azure ML endpoint's key is missing (api_key_file)")
            return {**out, "Authorization": f"Bearer {api_key}"}
        return {**out, "Authorization": f"Bearer {self.token()}"}


# ---------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    path: str
    url: str
    weight: float
    prefix: str  # path part of url, prepended to the request path
    pool: Pool
    internal: bool = False  # one of our own model servers: it gets the internal token
    origin: str = ""  # scheme://host[:port] as signed; the Host header of a signed request
    signer: Signer | GoogleSigner | AzureSigner | None = None
    api_key: str | None = None  # read from the route's api_key_file
    connect_to: str | None = None  # where the connection goes, when not to the URL's host (tests: a fake cloud)

    def target(self, path: str) -> str:
        """The upstream request target for a request to `path`: the URL's path prefix + `path`; a Google-signed
        route's URL is the whole target (Vertex AI answers predictions at one custom-method URL per endpoint,
        `.../endpoints/ID:rawPredict`, which passes the body to the model's container as it is), and so is an
        Azure-signed route's (a managed online endpoint's scoring URI, `.../score`)."""
        if isinstance(self.signer, GoogleSigner | AzureSigner):
            return self.prefix
        return self.prefix + path

    def outgoing(self, method: str, target: str, body: bytes, headers: dict[str, str],
                 internal_token: str | None) -> dict[str, str]:
        """The headers sent upstream for one request: `headers` plus this route's credentials."""
        out = dict(headers)
        if self.internal and internal_token:
            out[INTERNAL_HEADER] = internal_token
        if self.api_key:
            out["X-Api-Key"] = self.api_key
        if self.signer is not None:
            out = {k: v for k, v in out.items() if not k.lower().startswith("x-amz-")}  # ours, not a client's
            out["Host"] = self.origin.split("://", 1)[1]
            if self.connect_to:
                out["X-Mlplat-Original-Host"] = out["Host"]
            if isinstance(self.signer, AzureSigner):
                return self.signer.sign(method, self.origin + target, body, out, self.api_key)
            out = self.signer.sign(method, self.origin + target, body, out)
        return out


@dataclass(frozen=True)
class RouterState:
    """An immutable config snapshot; handlers read ``server.state`` once per request."""

    version: int
    config: dict[str, Any]
    routes: tuple[Route, ...]
    primaries: tuple[Route, ...]  # routes that serve responses (weight > 0)
    edges: tuple[float, ...]  # cumulative weights of ``primaries``
    mirrors: tuple[Route, ...]  # shadow mode: weight-0 routes that receive copies
    mirror_percent: float
    capture: dict[str, Any] | None = None  # the config's `capture`, when set
    compare_shadow: bool = False

    def choose(self) -> Route:
        r = random.random() * self.edges[-1]
        for route, edge in zip(self.primaries, self.edges, strict=True):
            if r < edge:
                return route
        return self.primaries[-1]

    def choose_live(self, down: frozenset[str], exclude: str | None = None) -> Route | None:
        """A route with weight > 0 chosen by weight among the live ones (an internal route whose path is in
        `down` is not) other than `exclude`; None when there is none."""
        live = [r for r in self.primaries if r.path != exclude and not (r.internal and r.path in down)]
        if not live:
            return None
        x = random.random() * sum(r.weight for r in live)
        for route in live:
            x -= route.weight
            if x < 0:
                return route
        return live[-1]


def _number(value: Any, what: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a number")
    if value < low or (high is not None and value > high):
        raise ConfigError(
            f"{what} must be between {low:g} and {high:g}"
            if high is not None
            else f"{what} must be >= {low:g}"
        )
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string")
    return value


def _sign(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be an object or null")
    unknown = sorted(set(value) - SIGN_KEYS)
    if unknown:
        raise ConfigError(f"{what} has unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(SIGN_KEYS))})")
    if value.get("kind") == "google":
        extra = sorted(set(value) - {"kind"})
        if extra:
            raise ConfigError(f"{what}: kind 'google' takes no other keys, got {', '.join(extra)}")
        return {"kind": "google"}
    if value.get("kind") == "azure":
        extra = sorted(set(value) - {"kind", "auth", "connect_to"})
        if extra:
            raise ConfigError(f"{what}: kind 'azure' takes only auth and connect_to, got {', '.join(extra)}")
        if value.get("auth") not in ("key", "aad_token"):
            raise ConfigError(f"{what}.auth must be 'key' or 'aad_token', got {value.get('auth')!r}")
        connect_to = value.get("connect_to")
        if connect_to is not None and urlsplit(_text(connect_to, f"{what}.connect_to")).scheme not in ("http",
                                                                                                      "https"):
            raise ConfigError(f"{what}.connect_to must be an http(s)://host:port URL, got {connect_to!r}")
        return {"kind": "azure", "auth": value["auth"], "connect_to": connect_to}
    if value.get("kind") != "sigv4":
        raise ConfigError(f"{what}.kind must be 'sigv4', 'google' or 'azure', got {value.get('kind')!r}")
    region = _text(value.get("region"), f"{what}.region")
    if not re.fullmatch(r"[a-z0-9-]+", region):
        raise ConfigError(f"{what}.region must look like us-east-1, got {region!r}")
    profile = value.get("profile")
    if profile is not None:
        _text(profile, f"{what}.profile")
    return {"kind": "sigv4", "service": _text(value.get("service"), f"{what}.service"), "region": region,
            "profile": profile}


def parse_route(route: Any, i: int) -> dict[str, Any]:
    """One normalized route: path, url and weight, plus internal/sign/api_key_file only where set."""
    if not isinstance(route, dict):
        raise ConfigError(f"routes[{i}] must be an object")
    unknown = sorted(set(route) - ROUTE_KEYS)
    if unknown:
        raise ConfigError(f"routes[{i}] has unknown keys {', '.join(unknown)}")
    name = route.get("path")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"routes[{i}].path must be a non-empty string")
    url = route.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"routes[{i}].url must be an http://host:port or https://host[:port] URL (a path "
                          f"prefix allowed), got {url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(f"routes[{i}].url has an invalid port: {url!r}") from None
    if parts.query or parts.fragment or parts.username is not None:
        raise ConfigError(f"routes[{i}].url must have no query, fragment or user: {url!r}")
    normalized: dict[str, Any] = {"path": name, "url": url.rstrip("/"),
                                  "weight": _number(route.get("weight", 0), f"routes[{i}].weight", 0)}
    internal = route.get("internal", False)
    if not isinstance(internal, bool):
        raise ConfigError(f"routes[{i}].internal must be true or false")
    if internal:
        if not is_loopback(parts.hostname):
            raise ConfigError(f"routes[{i}].internal: the internal token goes to loopback upstreams only, not "
                              f"{parts.hostname}")
        normalized["internal"] = True
    if route.get("sign") is not None:
        normalized["sign"] = _sign(route["sign"], f"routes[{i}].sign")
    key_file = route.get("api_key_file")
    if key_file is not None:
        if not isinstance(key_file, str) or not os.path.isabs(key_file):
            raise ConfigError(f"routes[{i}].api_key_file must be an absolute path, got {key_file!r}")
        normalized["api_key_file"] = key_file
    return normalized


def read_api_key(path: str) -> str:
    """The key an api_key_file holds; ConfigError unless it is a non-empty file only its owner may read."""
    try:
        info = os.stat(path)
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the api_key_file {path}: {exc}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
        raise ConfigError(f"the api_key_file {path} must be a file only its owner can read (mode 0600), "
                          f"not {stat.filemode(info.st_mode)}")
    if not text or "\n" in text:
        raise ConfigError(f"the api_key_file {path} must hold one key on one line")
    return text


def _capture(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError("'capture' must be an object {dir, sample_percent, request, response}, or null")
    unknown = sorted(set(value) - CAPTURE_KEYS)
    if unknown:
        raise ConfigError(f"'capture' has unknown keys {', '.join(unknown)} "
                          f"(allowed: {', '.join(sorted(CAPTURE_KEYS))})")
    directory = value.get("dir")
    if not isinstance(directory, str) or not os.path.isabs(directory):
        raise ConfigError(f"'capture.dir' must be an absolute path, got {directory!r}")
    percent = value.get("sample_percent")
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
        raise ConfigError(f"'capture.sample_percent' must be a whole number from 1 to 100, got {percent!r}")
    kept = {}
    for key in ("request", "response"):
        kept[key] = value.get(key, True)
        if not isinstance(kept[key], bool):
            raise ConfigError(f"'capture.{key}' must be true or false")
    if not (kept["request"] or kept["response"]):
        raise ConfigError("'capture' must keep the request, the response or both")
    return {"dir": directory, "sample_percent": percent, **kept}


def parse_config(doc: Any) -> dict[str, Any]:
    """Validate a router config; returns it normalized (defaults filled in); ConfigError on problems."""
    if not isinstance(doc, dict):
        raise ConfigError("config must be a JSON object")
    endpoint = doc.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigError("'endpoint' must be a non-empty string")
    mode = doc.get("mode", "split")
    if mode not in MODES:
        raise ConfigError(f"'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    routes = doc.get("routes")
    if not isinstance(routes, list) or not routes:
        raise ConfigError("'routes' must be a non-empty list")
    normalized = [parse_route(route, i) for i, route in enumerate(routes)]
    names = [r["path"] for r in normalized]
    if len(set(names)) != len(names):
        raise ConfigError("route paths must be unique")
    if not any(r["weight"] > 0 for r in normalized):
        raise ConfigError("at least one route needs a weight > 0")
    if mode == "shadow" and all(r["weight"] > 0 for r in normalized):
        raise ConfigError("shadow mode needs a route with weight 0 to mirror to")
    mirror_percent = _number(doc.get("mirror_percent", 100), "'mirror_percent'", 0, 100)
    timeout = _number(doc.get("timeout_s", 30), "'timeout_s'", 0.001)
    key_sha256 = doc.get("key_sha256")
    if key_sha256 is not None and not (isinstance(key_sha256, str) and re.fullmatch(r"[0-9a-f]{64}", key_sha256)):
        raise ConfigError("'key_sha256' must be the hex SHA-256 of the API key, or null")
    config = {
        "endpoint": endpoint,
        "mode": mode,
        "routes": normalized,
        "mirror_percent": mirror_percent,
        "timeout_s": timeout,
        "key_sha256": key_sha256,
    }
    # monitoring: shown only when set, so an endpoint without monitoring has the config it always had
    if doc.get("capture") is not None:
        config["capture"] = _capture(doc["capture"])
    compare = doc.get("compare_shadow")
    if compare is not None and not isinstance(compare, bool):
        raise ConfigError("'compare_shadow' must be true or false")
    if compare:
        config["compare_shadow"] = True
    return config


def load_config(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read router config {path}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"router config {path} is not valid JSON: {exc}") from None
    try:
        config = parse_config(doc)
        for route in config["routes"]:  # a key file that cannot be used fails the load, not each request
            if "api_key_file" in route:
                read_api_key(route["api_key_file"])
        return config
    except ValueError as exc:
        raise ConfigError(f"invalid router config {path}: {exc}") from None


# ---------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RouteStats:
    """Cumulative numbers of one route path (kept across reloads, and after the route is removed)."""

    requests: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def add(self, latency_ms: float, error: bool) -> None:
        self.requests += 1
        self.errors += error
        self.buckets[bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)] += 1

    def to_json(self) -> dict[str, Any]:
        names = [*map(str, LATENCY_BOUNDS_MS), "inf"]
        return {"requests": self.requests, "errors": self.errors,
                "latency_ms_buckets": dict(zip(names, self.buckets, strict=True))}


@dataclass
class Health:
    """An internal route's health as this router last saw it."""

    url: str
    up: bool
    changed: float  # unix time of the last transition (or of when the route appeared)
    downs: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"up": self.up, "changed": round(self.changed, 3), "downs": self.downs}


def _failure(exc: BaseException) -> str:
    return "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"


def _connection_failed(exc: BaseException) -> bool:
    """The upstream is not there (refused, reset, closed without answering): not a timeout, not an answer."""
    return isinstance(exc, ConnectionError)


# ---------------------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Primary:
    """What a mirror copy carries to be compared with (compare_shadow)."""

    id: str
    ts: float
    endpoint: str
    path: str
    status: int
    body: bytes
    seconds: float  # the primary's upstream round trip
    directory: str | None  # the capture directory, if any


@dataclass(frozen=True)
class MirrorJob:
    route: Route
    method: str
    target: str
    body: bytes
    headers: dict[str, str]
    primary: Primary | None = None


def _row_id() -> str:
    return os.urandom(8).hex()


def _names(paths: list[str]) -> str:
    return paths[0] if len(paths) == 1 else f"{', '.join(paths[:-1])} and {paths[-1]}"


class RouterServer(RuntimeServer):
    def __init__(self, address: tuple[str, int], config_path: Path, quiet: bool,
                 internal_token: str | None = None, kind: str = "router") -> None:
        self.config_path = config_path
        self.internal_token = internal_token
        self._pools: dict[tuple[str, str, int, float], Pool] = {}
        self._signers: dict[tuple[str, ...], Signer | GoogleSigner] = {}
        self._reload_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.route_stats: dict[str, RouteStats] = {}
        self.health: dict[str, Health] = {}  # internal route path: health
        self._down: frozenset[str] = frozenset()  # internal route paths marked down (replaced, never mutated)
        self._checkers: set[str] = set()  # internal route paths a health thread checks
        self._closing = threading.Event()
        self._sample_lock = threading.Lock()
        self._sampled = 0  # capture: error diffusion, in percent
        self.last_reload_error: str | None = None
        self._init_metrics()
        self.state = self._build(load_config(config_path), version=1)
        self._mirror_queue: queue.Queue[MirrorJob] = queue.Queue(MIRROR_QUEUE)
        super().__init__(
            address, RouterHandler, component=f"{kind}[{self.state.config['endpoint']}]", access_log=not quiet
        )
        self.writer = CaptureWriter(self.log, self.m_captured, self.m_dropped)
        for i in range(MIRROR_WORKERS):
            threading.Thread(target=self._mirror_worker, name=f"mirror-{i}", daemon=True).start()
        self._start_checks(self.state)

    def _init_metrics(self) -> None:
        registry = self.registry = metrics.Registry()
        self.m_requests = registry.counter(
            "mlplat_requests_total", "Requests answered to callers, by the route that answered and the status sent",
            ("endpoint", "path", "code"))
        self.m_errors = registry.counter(
            "mlplat_request_errors_total", "Attempts answered 5xx by the upstream or failed (502), by route",
            ("endpoint", "path"))
        self.m_duration = registry.histogram(
            "mlplat_request_duration_seconds", "Upstream round trip of each attempt", ("endpoint", "path"))
        self.m_up = registry.gauge(
            "mlplat_upstream_up", "1 while an internal route's model server passes its health checks",
            ("endpoint", "path"))
        self.m_captured = registry.counter("mlplat_captured_rows_total", "Capture rows written", ("endpoint",))
        self.m_dropped = registry.counter(
            "mlplat_capture_dropped_total", "Capture and shadow rows dropped (queue full, or not writable)",
            ("endpoint",))
        self.m_pairs = registry.counter(
            "mlplat_shadow_pairs_total", "Mirrored requests whose copy was answered and compared", ("endpoint", "path"))
        self.m_instances = registry.counter(
            "mlplat_shadow_instances_total", "Instances compared between primary and shadow", ("endpoint", "path"))
        self.m_agreements = registry.counter(
            "mlplat_shadow_agreements_total", "Compared instances with the same predicted label",
            ("endpoint", "path"))
        self.m_delta = registry.summary(
            "mlplat_shadow_latency_delta_seconds", "Shadow minus primary upstream round trip", ("endpoint", "path"))
        self._gpus = metrics.Gpus()
        self._scrape_lock = threading.Lock()
        registry.collector(self._drift_lines)
        registry.collector(metrics.process_lines)
        registry.collector(self._gpus.lines)

    def _build(self, config: dict[str, Any], version: int) -> RouterState:
        """The state for `config`: pools and signers reused by upstream, key files read (ConfigError)."""
        routes = []
        for r in config["routes"]:
            parts = urlsplit(r["url"])
            scheme, host = parts.scheme, parts.hostname or ""
            port = parts.port or (443 if scheme == "https" else 80)
            connect_to = (r.get("sign") or {}).get("connect_to")
            target = urlsplit(connect_to) if connect_to else parts
            key = (target.scheme, target.hostname or "", target.port or (443 if target.scheme == "https" else 80),
                   config["timeout_s"])
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = Pool(key[1], key[2], config["timeout_s"], key[0])
            signer = None
            if "sign" in r:
                sign = r["sign"]
                if sign["kind"] == "google":
                    signer = self._signers.get(("google",))
                    if signer is None:
                        signer = self._signers[("google",)] = GoogleSigner()
                elif sign["kind"] == "azure":
                    signer = self._signers.get(("azure", sign["auth"]))
                    if signer is None:
                        signer = self._signers[("azure", sign["auth"])] = AzureSigner(sign["auth"])
                else:
                    skey = (sign["service"], sign["region"], sign["profile"])
                    signer = self._signers.get(skey)
                    if signer is None:
                        signer = self._signers[skey] = Signer(*skey)
            api_key = read_api_key(r["api_key_file"]) if "api_key_file" in r else None
            routes.append(Route(r["path"], r["url"], r["weight"], parts.path.rstrip("/"), pool,
                                r.get("internal", False), f"{scheme}://{_host_header(scheme, host, port)}",
                                signer, api_key, connect_to))
        endpoint = config["endpoint"]
        with self._stats_lock:
            for route in routes:
                self.route_stats.setdefault(route.path, RouteStats())
        for route in routes:  # zeros from the start, so that a rate over the first requests is right
            self.m_errors.inc(0, endpoint=endpoint, path=route.path)
        primaries = tuple(r for r in routes if r.weight > 0)
        edges, total = [], 0.0
        for r in primaries:
            total += r.weight
            edges.append(total)
        mirrors = tuple(r for r in routes if r.weight == 0) if config["mode"] == "shadow" else ()
        capture, compare = config.get("capture"), config.get("compare_shadow", False)
        if capture is not None:
            self.m_captured.inc(0, endpoint=endpoint)
            self.m_dropped.inc(0, endpoint=endpoint)
        if compare:
            for route in mirrors:
                for counter in (self.m_pairs, self.m_instances, self.m_agreements):
                    counter.inc(0, endpoint=endpoint, path=route.path)
        return RouterState(
            version, config, tuple(routes), primaries, tuple(edges), mirrors, config["mirror_percent"], capture, compare
        )

    def reload(self) -> None:
        """Re-read the config file and swap it in; on error keep the old one and re-raise."""
        with self._reload_lock:
            old = self.state
            try:
                state = self._build(load_config(self.config_path), old.version + 1)
            except ValueError as exc:
                self.last_reload_error = str(exc)
                raise
            self.state = state  # atomic swap: one attribute assignment
            self.last_reload_error = None
            in_use = {id(r.pool) for r in self.state.routes}
            for key, pool in list(self._pools.items()):
                if id(pool) not in in_use:  # upstream gone from the config
                    del self._pools[key]
                    pool.close()
            self._start_checks(state)
            self.log(f"config reloaded (version {self.state.version}): {self._describe(self.state)}")

    @staticmethod
    def _describe(state: RouterState) -> str:
        routes = ", ".join(f"{r['path']}={r['weight']:g}" for r in state.config["routes"])
        capture = state.capture
        extra = f" capture={capture['sample_percent']}%" if capture else ""
        return f"mode={state.config['mode']} {routes}{extra}" + (" compare_shadow" if state.compare_shadow else "")

    def close_monitoring(self) -> None:
        """At shutdown: stop the health checks, write out the queued capture rows."""
        self._closing.set()
        self.writer.close()

    # -- statistics --------------------------------------------------------------------------------------------

    def count(self, key: str) -> None:
        with self._stats_lock:
            self.counts[key] += 1

    def record(self, endpoint: str, route: Route, started: float, error: bool) -> float:
        """One attempt at `route` that started (monotonic) at `started`; returns its round trip (s)."""
        seconds = time.monotonic() - started
        with self._stats_lock:
            self.route_stats.setdefault(route.path, RouteStats()).add(seconds * 1000, error)
        self.m_duration.observe(seconds, endpoint=endpoint, path=route.path)
        if error:
            self.m_errors.inc(endpoint=endpoint, path=route.path)
        return seconds

    def answered(self, endpoint: str, path: str, status: int) -> None:
        self.m_requests.inc(endpoint=endpoint, path=path, code=str(status))

    def stats_snapshot(self) -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
        with self._stats_lock:
            return (dict(self.counts), {path: s.to_json() for path, s in self.route_stats.items()},
                    {path: h.to_json() for path, h in self.health.items()})

    def sample(self, percent: int) -> bool:
        """Whether to capture this request: exactly `percent` % of the calls, evenly spread."""
        with self._sample_lock:
            self._sampled += percent
            if self._sampled >= 100:
                self._sampled -= 100
                return True
            return False

    def render_metrics(self) -> bytes:
        state = self.state
        with self._scrape_lock:
            self.m_up.clear()
            with self._stats_lock:
                up = {path: h.up for path, h in self.health.items()}
            for route in state.routes:
                if route.path in up:
                    self.m_up.set(1 if up[route.path] else 0, endpoint=state.config["endpoint"], path=route.path)
            return self.registry.render()

    def _drift_lines(self) -> list[str]:
        """mlplat_drift_score from `<capture dir>/drift-scores.json`; none when it is missing or malformed."""
        state = self.state
        if state.capture is None:
            return []
        try:
            doc = json.loads(Path(state.capture["dir"], SCORES_FILE).read_bytes())
        except (OSError, ValueError):
            return []
        scores = doc.get("scores") if isinstance(doc, dict) else None
        if not isinstance(scores, list):
            return []
        gauge = metrics.Gauge("mlplat_drift_score", "Drift score of a feature, from the last mlplat monitor run",
                              ("endpoint", "feature", "metric"))
        for score in scores:
            if not isinstance(score, dict):
                return []
            feature, metric, value = score.get("feature"), score.get("metric"), score.get("value")
            if not (isinstance(feature, str) and isinstance(metric, str) and isinstance(value, (int, float))
                    and not isinstance(value, bool)):
                return []
            gauge.set(value, endpoint=state.config["endpoint"], feature=feature, metric=metric)
        return [*gauge.header(), *gauge.lines()]

    # -- health of internal routes -----------------------------------------------------------------------------

    def choose(self, state: RouterState, exclude: str | None = None) -> Route | None:
        down = self._down
        if exclude is None and not down:
            return state.choose()
        return state.choose_live(down, exclude)

    def _start_checks(self, state: RouterState) -> None:
        """Health records for `state`'s internal routes (a new or moved one starts up), and a checker each."""
        now = time.time()
        internal = {r.path: r for r in state.routes if r.internal}
        with self._stats_lock:
            for path in list(self.health):
                if path not in internal:
                    del self.health[path]
            for path, route in internal.items():
                known = self.health.get(path)
                if known is None or known.url != route.url:
                    self.health[path] = Health(route.url, True, now, known.downs if known else 0)
            self._down = frozenset(p for p, h in self.health.items() if not h.up)
            for path in internal:
                if path not in self._checkers:
                    self._checkers.add(path)
                    threading.Thread(target=self._check_loop, args=(path,), name=f"health-{path}",
                                     daemon=True).start()

    def _internal_route(self, path: str) -> Route | None:
        return next((r for r in self.state.routes if r.path == path and r.internal), None)

    def _check_loop(self, path: str) -> None:
        while not self._closing.is_set():
            route = self._internal_route(path)
            if route is None:
                with self._stats_lock:
                    if self._internal_route(path) is None:  # under the lock _start_checks holds: no race
                        self._checkers.discard(path)
                        return
                continue
            up, reason = self._check(route, self.internal_token)
            self.set_health(route, up, reason)
            self._closing.wait(HEALTH_INTERVAL_S)

    @staticmethod
    def _check(route: Route, token: str | None) -> tuple[bool, str]:
        """GET /-/healthz on a connection of its own (with the internal token, as every request to an internal
        route): (passed, why not)."""
        pool = route.pool
        if pool.context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                pool.host, pool.port, timeout=HEALTH_TIMEOUT_S, context=pool.context)
        else:
            conn = http.client.HTTPConnection(pool.host, pool.port, timeout=HEALTH_TIMEOUT_S)
        try:
            conn.request("GET", route.prefix + HEALTH_PATH, headers={INTERNAL_HEADER: token} if token else {})
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200, f"health check answered {resp.status}"
        except (OSError, http.client.HTTPException) as exc:
            return False, f"health check failed: {_failure(exc)}"
        finally:
            conn.close()

    def set_health(self, route: Route, up: bool, reason: str) -> None:
        """Mark an internal route up or down (a route since moved to another URL is left alone)."""
        with self._stats_lock:
            health = self.health.get(route.path)
            if health is None or health.url != route.url or health.up == up:
                return
            health.up, health.changed = up, time.time()
            health.downs += not up
            self._down = frozenset(p for p, h in self.health.items() if not h.up)
        cut = 0 if up else route.pool.abort()  # requests waiting on it are retried on a live path
        self.log(f"route '{route.path}' ({route.url}) is up" if up else
                 f"route '{route.path}' ({route.url}) is down: {reason}"
                 + (f"; {cut} request(s) waiting on it cut, to be retried elsewhere" if cut else ""))

    # -- mirror copies -----------------------------------------------------------------------------------------

    def mirror(
        self, state: RouterState, method: str, target: str, body: bytes, headers: dict[str, str],
        primary: Primary | None = None,
    ) -> None:
        for route in state.mirrors:
            if random.random() * 100 >= state.mirror_percent:
                continue
            upstream_target = route.target(target)
            try:
                outgoing = route.outgoing(method, upstream_target, body, {**headers, "X-Mlplat-Shadow": "1"},
                                          self.internal_token)
            except SigningError:
                self.count(f"mirror_errors.{route.path}")
                continue
            try:
                self._mirror_queue.put_nowait(MirrorJob(route, method, upstream_target, body, outgoing, primary))
                self.count(f"mirror_queued.{route.path}")
            except queue.Full:
                self.count(f"mirror_dropped.{route.path}")

    def _mirror_worker(self) -> None:
        while True:
            job = self._mirror_queue.get()
            try:
                started = time.monotonic()
                status, _, data = job.route.pool.request(job.method, job.target, job.body, job.headers)
                seconds = time.monotonic() - started
                self.count(f"mirror_sent.{job.route.path}")
                if status >= 500:
                    self.count(f"mirror_errors.{job.route.path}")
            except Exception:  # mirror failures never matter to the caller
                self.count(f"mirror_errors.{job.route.path}")
                continue
            if job.primary is not None:
                try:
                    self._compare(job.route, job.primary, status, data, seconds)
                except Exception as exc:  # a comparison bug must not end the worker
                    self.log(f"shadow comparison failed: {type(exc).__name__}: {exc}")

    def _compare(self, route: Route, primary: Primary, status: int, data: bytes, seconds: float) -> None:
        instances = agreements = 0
        if primary.status == 200 and status == 200:
            instances, agreements = agreement(parsed(primary.body), parsed(data))
        labels = {"endpoint": primary.endpoint, "path": route.path}
        self.m_pairs.inc(**labels)
        self.m_instances.inc(instances, **labels)
        self.m_agreements.inc(agreements, **labels)
        self.m_delta.observe(seconds - primary.seconds, **labels)
        if primary.directory is not None:
            self.writer.submit(ShadowRow(primary.directory, primary.endpoint, {
                "ts": round(primary.ts, 3), "id": primary.id, "endpoint": primary.endpoint, "primary": primary.path,
                "shadow": route.path, "primary_status": primary.status, "shadow_status": status,
                "primary_ms": round(primary.seconds * 1000, 3), "shadow_ms": round(seconds * 1000, 3),
                "instances": instances, "agreements": agreements}))


def _host_header(scheme: str, host: str, port: int) -> str:
    """host[:port] as a client sends it in Host (the port left out when it is the scheme's default)."""
    name = f"[{host}]" if ":" in host else host
    return name if port == (443 if scheme == "https" else 80) else f"{name}:{port}"


class RouterHandler(BaseHandler):
    server: RouterServer

    def handle_request(self) -> None:
        state = self.server.state  # this request uses this config to the end, even across a reload
        if state.config["key_sha256"] and self.route_path != "/-/healthz" and not self._authorized(state):
            raise HTTPError(401, "this endpoint needs its API key: Authorization: Bearer <key> or X-Api-Key",
                            [("WWW-Authenticate", 'Bearer realm="mlplat"')])
        if self.path.startswith("/-/"):
            self._internal()
            return
        if self.route_path == "/metrics":
            if self.command != "GET":
                raise HTTPError(405, "/metrics only supports GET", [("Allow", "GET")])
            self.send_bytes(200, self.server.render_metrics(), metrics.CONTENT_TYPE)
            return
        server = self.server
        body = self.read_body()
        headers = self._upstream_headers()
        endpoint = state.config["endpoint"]
        received = time.time()
        route = server.choose(state)
        if route is None:
            self._no_live_path(state)
            return
        answer, failure, seconds = None, None, 0.0
        for attempt in (1, 2):
            target = route.target(self.path)
            started = time.monotonic()
            try:
                outgoing = route.outgoing(self.command, target, body, headers, server.internal_token)
                answer = route.pool.request(self.command, target, body, outgoing)
            except (OSError, http.client.HTTPException, SigningError) as exc:
                server.record(endpoint, route, started, error=True)
                server.count(f"errors.{route.path}")
                failure = exc
                if route.internal and _connection_failed(exc):
                    server.set_health(route, False, f"a request failed: {_failure(exc)}")
                    other = server.choose(state, exclude=route.path) if attempt == 1 else None
                    if other is not None:  # predictions have no side effects: once more, elsewhere
                        server.count(f"retried.{route.path}")
                        route = other
                        continue
                break
            else:
                seconds = server.record(endpoint, route, started, error=answer[0] >= 500)
                server.count(f"requests.{route.path}")
                break
        if answer is None:
            assert failure is not None
            server.answered(endpoint, route.path, 502)
            self.send_json(
                502,
                {"error": f"upstream '{route.path}' ({route.url}) failed: {_failure(failure)}", "path": route.path},
                headers=[("X-Mlplat-Path", route.path)],
            )
        else:
            status, upstream_headers, data = answer
            server.answered(endpoint, route.path, status)
            content_type = "application/octet-stream"
            length = None  # a HEAD response has no body but announces the GET body's length
            passthrough = []
            for name, value in upstream_headers:
                lower = name.lower()
                if lower == "content-type":
                    content_type = value
                elif lower == "content-length" and self.command == "HEAD" and value.isdigit():
                    length = int(value)
                elif lower not in _NOT_RETURNED:
                    passthrough.append((name, value))
            passthrough.append(("X-Mlplat-Path", route.path))
            self.send_bytes(status, data, content_type, passthrough, content_length=length)
        capture = state.capture
        sampled = answer is not None and capture is not None and server.sample(capture["sample_percent"])
        compare = answer is not None and state.compare_shadow and bool(state.mirrors)
        if not (sampled or state.mirrors):
            return
        self.wfile.flush()  # the caller gets its response before a row or a copy is even queued
        row_id = _row_id() if sampled or compare else ""
        if sampled:
            assert capture is not None and answer is not None
            server.writer.submit(CaptureRow(
                capture["dir"], received, row_id, endpoint, route.path, answer[0], seconds * 1000,
                body if capture["request"] else None, answer[2] if capture["response"] else None))
        if state.mirrors:
            primary = None
            if compare:
                assert answer is not None
                primary = Primary(row_id, received, endpoint, route.path, answer[0], answer[2], seconds,
                                  capture["dir"] if capture else None)
            server.mirror(state, self.command, self.path, body, headers, primary)

    def _no_live_path(self, state: RouterState) -> None:
        """503: every route with weight > 0 is an internal one marked down."""
        endpoint = state.config["endpoint"]
        _, _, health = self.server.stats_snapshot()
        down = [r.path for r in state.primaries]
        says = "is down (its model server is" if len(down) == 1 else "are down (their model servers are"
        self.server.count("no_live_path")
        self.server.answered(endpoint, NO_PATH, 503)
        self.server.m_errors.inc(endpoint=endpoint, path=NO_PATH)
        self.send_json(503, {"error": f"no live path for endpoint '{endpoint}': {_names(down)} {says} restarting "
                                      "or stopped)",
                             "paths": {path: health.get(path) for path in down}},
                       headers=[("Retry-After", "1")])

    def _authorized(self, state: RouterState) -> bool:
        presented = self.headers.get("X-Api-Key") or ""
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            presented = token.strip()
        digest = hashlib.sha256(presented.encode()).hexdigest()
        return bool(presented) and hmac.compare_digest(digest, state.config["key_sha256"])

    def _upstream_headers(self) -> dict[str, str]:
        connection_tokens = {t.strip().lower() for t in self.headers.get("Connection", "").split(",")}
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            lower = name.lower()
            if lower in _HOP_BY_HOP or lower in connection_tokens or lower in _NOT_FORWARDED:
                continue
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        forwarded = self.headers.get("X-Forwarded-For")
        client = self.client_address[0]
        headers["X-Forwarded-For"] = f"{forwarded}, {client}" if forwarded else client
        return headers

    def _internal(self) -> None:
        path = self.route_path
        if self.command != "GET":
            raise HTTPError(405, f"{path} only supports GET", [("Allow", "GET")])
        state = self.server.state
        if path == "/-/healthz":
            payload: dict[str, Any] = {
                "status": "ok",
                "endpoint": state.config["endpoint"],
                "mode": state.config["mode"],
                "pid": os.getpid(),
                "config_version": state.version,
            }
            if self.server.last_reload_error:
                payload["last_reload_error"] = self.server.last_reload_error
            self.send_json(200, payload)
        elif path == "/-/config":
            self.send_json(200, state.config, headers=[("X-Mlplat-Config-Version", str(state.version))])
        elif path == "/-/stats":
            counts, routes, health = self.server.stats_snapshot()
            self.send_json(200, {"config_version": state.version, "counts": counts, "routes": routes,
                                 "health": health})
        else:
            raise HTTPError(404, f"no route {path}")


def main(argv: list[str] | None = None) -> int:
    block_signals()  # before any thread exists, so all threads inherit the mask
    parser = argparse.ArgumentParser(prog="router", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="router config JSON file")
    parser.add_argument("--runtime-file", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--internal-token-file", type=Path, help="token to send to the internal routes")
    parser.add_argument("--kind", choices=KINDS, default="router", help="what the runtime file calls this process")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = parser.parse_args(argv)
    try:
        token = read_token(args.internal_token_file) if args.internal_token_file else None
        server = RouterServer((args.host, args.port), args.config, args.quiet, token, args.kind)
    except (OSError, ValueError) as exc:
        print(f"router: {exc}", file=sys.stderr)
        return 2
    config = server.state.config
    info = {"kind": args.kind, "endpoint": config["endpoint"], "config": str(args.config.resolve())}
    try:
        return serve(server, args.runtime_file, info, on_reload=server.reload)
    finally:
        server.close_monitoring()


if __name__ == "__main__":
    sys.exit(main())
