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
     "key_sha256": null}         # optional: clients must send the key with this SHA-256

A route's ``url`` is http or https, with an optional path prefix put before the request path. Optional per route:
``internal`` (true: the upstream is one of our own model servers on loopback, and gets the internal token; no
other upstream ever does), ``sign`` (SigV4-sign every request with the standard AWS credential chain, botocore
imported only then) and ``api_key_file`` (an absolute path to a file only its owner can read, holding a key sent
as ``X-Api-Key``; the config never holds a key).

split:  each request goes to one route, chosen by weight.
shadow: each request is served by a route with weight > 0 (chosen by weight; normally production at 100);
        every weight-0 route additionally receives a copy of ``mirror_percent`` % of the requests. Copies
        are sent after the caller has its response, by a bounded worker pool; they are dropped when the
        queue is full and their results and failures are ignored.

Every forwarded response carries ``X-Mlplat-Path`` naming this router's route that served it (one from the
upstream, a router behind this one, is replaced; its ``X-Mlplat-Model`` passes through). An unreachable upstream
gives 502 ``{"error": ..., "path": ...}``. Internal endpoints: ``GET /-/healthz``, ``GET /-/config`` (the active
config), ``GET /-/stats``: ``counts`` and, per route path, ``routes`` = ``{"requests", "errors",
"latency_ms_buckets"}`` counted since the process started, across reloads. ``requests`` counts every request
routed there (mirror copies are in ``counts`` only), ``errors`` those answered 5xx by the upstream or 502 by the
router (unreachable, timed out, not signable); ``latency_ms_buckets`` is a plain histogram of the upstream round
trip: each request is counted once, under the smallest bound (ms: 5, 10, 25, ... 10000, "inf") at or above it.
SIGHUP re-reads the config file (and the key files) and swaps it in atomically: requests already running finish on
the old config and no socket is closed. A config that fails to load is logged and the old one kept. Write the
config file atomically (write + rename).

With ``--internal-token-file`` the router sends that token (``X-Mlplat-Internal``) to ``internal`` routes, its own
model servers, which refuse requests without it; a token a client sends is never forwarded, nor are a client's
``Authorization`` and ``X-Api-Key``.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import hmac
import http.client
import json
import math
import os
import queue
import random
import re
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

from .processes import (
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
SIGN_KEYS = frozenset({"kind", "service", "region", "profile"})
ROUTE_KEYS = frozenset({"path", "url", "weight", "internal", "sign", "api_key_file"})


class ConfigError(ValueError):
    """An invalid router config."""


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
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> http.client.HTTPConnection:
        if self.context is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _acquire(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

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
            except _STALE:
                conn.close()
                if reused:
                    continue  # stale keep-alive connection; the next one may be stale too, or fresh
                raise
            except BaseException:
                conn.close()
                raise
            if resp.will_close:
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
    signer: Signer | None = None
    api_key: str | None = None  # read from the route's api_key_file

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

    def choose(self) -> Route:
        r = random.random() * self.edges[-1]
        for route, edge in zip(self.primaries, self.edges, strict=True):
            if r < edge:
                return route
        return self.primaries[-1]


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
    if value.get("kind") != "sigv4":
        raise ConfigError(f"{what}.kind must be 'sigv4', got {value.get('kind')!r}")
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
    return {
        "endpoint": endpoint,
        "mode": mode,
        "routes": normalized,
        "mirror_percent": mirror_percent,
        "timeout_s": timeout,
        "key_sha256": key_sha256,
    }


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


# ---------------------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorJob:
    route: Route
    method: str
    target: str
    body: bytes
    headers: dict[str, str]


class RouterServer(RuntimeServer):
    def __init__(self, address: tuple[str, int], config_path: Path, quiet: bool,
                 internal_token: str | None = None, kind: str = "router") -> None:
        self.config_path = config_path
        self.internal_token = internal_token
        self._pools: dict[tuple[str, str, int, float], Pool] = {}
        self._signers: dict[tuple[str, str, str | None], Signer] = {}
        self._reload_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.route_stats: dict[str, RouteStats] = {}
        self.last_reload_error: str | None = None
        self.state = self._build(load_config(config_path), version=1)
        self._mirror_queue: queue.Queue[MirrorJob] = queue.Queue(MIRROR_QUEUE)
        super().__init__(
            address, RouterHandler, component=f"{kind}[{self.state.config['endpoint']}]", access_log=not quiet
        )
        for i in range(MIRROR_WORKERS):
            threading.Thread(target=self._mirror_worker, name=f"mirror-{i}", daemon=True).start()

    def _build(self, config: dict[str, Any], version: int) -> RouterState:
        """The state for `config`: pools and signers reused by upstream, key files read (ConfigError)."""
        routes = []
        for r in config["routes"]:
            parts = urlsplit(r["url"])
            scheme, host = parts.scheme, parts.hostname or ""
            port = parts.port or (443 if scheme == "https" else 80)
            key = (scheme, host, port, config["timeout_s"])
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = Pool(host, port, config["timeout_s"], scheme)
            signer = None
            if "sign" in r:
                sign = r["sign"]
                skey = (sign["service"], sign["region"], sign["profile"])
                signer = self._signers.get(skey)
                if signer is None:
                    signer = self._signers[skey] = Signer(*skey)
            api_key = read_api_key(r["api_key_file"]) if "api_key_file" in r else None
            routes.append(Route(r["path"], r["url"], r["weight"], parts.path.rstrip("/"), pool,
                                r.get("internal", False), f"{scheme}://{_host_header(scheme, host, port)}",
                                signer, api_key))
        with self._stats_lock:
            for route in routes:
                self.route_stats.setdefault(route.path, RouteStats())
        primaries = tuple(r for r in routes if r.weight > 0)
        edges, total = [], 0.0
        for r in primaries:
            total += r.weight
            edges.append(total)
        mirrors = tuple(r for r in routes if r.weight == 0) if config["mode"] == "shadow" else ()
        return RouterState(
            version, config, tuple(routes), primaries, tuple(edges), mirrors, config["mirror_percent"]
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
            self.log(f"config reloaded (version {self.state.version}): {self._describe(self.state)}")

    @staticmethod
    def _describe(state: RouterState) -> str:
        routes = ", ".join(f"{r['path']}={r['weight']:g}" for r in state.config["routes"])
        return f"mode={state.config['mode']} {routes}"

    def count(self, key: str) -> None:
        with self._stats_lock:
            self.counts[key] += 1

    def record(self, route: Route, started: float, error: bool) -> None:
        """One request routed to `route` that started (monotonic) at `started`."""
        latency_ms = (time.monotonic() - started) * 1000
        with self._stats_lock:
            self.route_stats.setdefault(route.path, RouteStats()).add(latency_ms, error)

    def stats_snapshot(self) -> tuple[dict[str, int], dict[str, Any]]:
        with self._stats_lock:
            return dict(self.counts), {path: s.to_json() for path, s in self.route_stats.items()}

    def mirror(
        self, state: RouterState, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> None:
        for route in state.mirrors:
            if random.random() * 100 >= state.mirror_percent:
                continue
            upstream_target = route.prefix + target
            try:
                outgoing = route.outgoing(method, upstream_target, body, {**headers, "X-Mlplat-Shadow": "1"},
                                          self.internal_token)
            except SigningError:
                self.count(f"mirror_errors.{route.path}")
                continue
            try:
                self._mirror_queue.put_nowait(MirrorJob(route, method, upstream_target, body, outgoing))
                self.count(f"mirror_queued.{route.path}")
            except queue.Full:
                self.count(f"mirror_dropped.{route.path}")

    def _mirror_worker(self) -> None:
        while True:
            job = self._mirror_queue.get()
            try:
                status, _, _ = job.route.pool.request(job.method, job.target, job.body, job.headers)
                self.count(f"mirror_sent.{job.route.path}")
                if status >= 500:
                    self.count(f"mirror_errors.{job.route.path}")
            except Exception:  # mirror failures never matter to the caller
                self.count(f"mirror_errors.{job.route.path}")


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
        body = self.read_body()
        headers = self._upstream_headers()
        route = state.choose()
        target = route.prefix + self.path
        started = time.monotonic()
        try:
            outgoing = route.outgoing(self.command, target, body, headers, self.server.internal_token)
            status, upstream_headers, data = route.pool.request(self.command, target, body, outgoing)
        except (OSError, http.client.HTTPException, SigningError) as exc:
            self.server.record(route, started, error=True)
            self.server.count(f"errors.{route.path}")
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            self.send_json(
                502,
                {"error": f"upstream '{route.path}' ({route.url}) failed: {reason}", "path": route.path},
                headers=[("X-Mlplat-Path", route.path)],
            )
        else:
            self.server.record(route, started, error=status >= 500)
            self.server.count(f"requests.{route.path}")
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
        if state.mirrors:
            self.wfile.flush()  # the caller gets its response before the copy is even queued
            self.server.mirror(state, self.command, self.path, body, headers)

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
            counts, routes = self.server.stats_snapshot()
            self.send_json(200, {"config_version": state.version, "counts": counts, "routes": routes})
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
    return serve(server, args.runtime_file, info, on_reload=server.reload)


if __name__ == "__main__":
    sys.exit(main())
