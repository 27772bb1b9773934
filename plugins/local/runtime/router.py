"""Router: one endpoint in front of a production and an experimental model server.

    python -m mlplat_plugins.local.runtime.router --config FILE --runtime-file FILE
        [--host 127.0.0.1] [--port 0] [--internal-token-file FILE] [--quiet]

Config file (JSON)::

    {"endpoint": "iris", "mode": "split" | "shadow",
     "routes": [{"path": "production", "url": "http://127.0.0.1:PORT", "weight": 80},
                {"path": "experimental", "url": "http://127.0.0.1:PORT", "weight": 20}],
     "mirror_percent": 100,      # optional, shadow mode only, default 100
     "timeout_s": 30}            # optional upstream timeout, default 30

split:  each request goes to one route, chosen by weight.
shadow: each request is served by a route with weight > 0 (chosen by weight; normally production at 100);
        every weight-0 route additionally receives a copy of ``mirror_percent`` % of the requests. Copies
        are sent after the caller has its response, by a bounded worker pool; they are dropped when the
        queue is full and their results and failures are ignored.

Every forwarded response carries ``X-Mlplat-Path`` naming the route that served it; an unreachable
upstream gives 502 ``{"error": ..., "path": ...}``. Internal endpoints: ``GET /-/healthz``,
``GET /-/config`` (the active config), ``GET /-/stats``. SIGHUP re-reads the config file and swaps it in
atomically: requests already running finish on the old config and no socket is closed. A config that
fails to load is logged and the old one kept. Write the config file atomically (write + rename).

With ``--internal-token-file`` the router sends that token (``X-Mlplat-Internal``) to upstreams on loopback,
its own model servers, which refuse requests without it; a token a client sends is never forwarded.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import math
import os
import queue
import random
import re
import sys
import threading
from collections import Counter
from dataclasses import dataclass
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
MIRROR_WORKERS = 4
MIRROR_QUEUE = 256
POOL_MAX_IDLE = 32


class ConfigError(ValueError):
    """An invalid router config."""


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
_NOT_RETURNED = _HOP_BY_HOP | {"content-type", "date", "server"}
#: the caller's credentials stay at the router; an internal token only the router itself may send
_NOT_FORWARDED = frozenset({"authorization", "x-api-key", INTERNAL_HEADER.lower()})


# ---------------------------------------------------------------------------------------------------------
# Upstream connections
# ---------------------------------------------------------------------------------------------------------


class Pool:
    """Keep-alive connections to one upstream, reused across requests and threads."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _acquire(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout), False

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
            except (ConnectionError, http.client.BadStatusLine):
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
    loopback: bool  # an upstream on this machine: it gets the internal token


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
    normalized = []
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            raise ConfigError(f"routes[{i}] must be an object")
        name = route.get("path")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"routes[{i}].path must be a non-empty string")
        url = route.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"routes[{i}].url must be an http://host:port URL, got {url!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise ConfigError(f"routes[{i}].url has an invalid port: {url!r}") from None
        weight = _number(route.get("weight", 0), f"routes[{i}].weight", 0)
        normalized.append({"path": name, "url": url.rstrip("/"), "weight": weight})
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
        return parse_config(doc)
    except ValueError as exc:
        raise ConfigError(f"invalid router config {path}: {exc}") from None


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
                 internal_token: str | None = None) -> None:
        self.config_path = config_path
        self.internal_token = internal_token
        self._pools: dict[tuple[str, int, float], Pool] = {}
        self._reload_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.last_reload_error: str | None = None
        self.state = self._build(load_config(config_path), version=1)
        self._mirror_queue: queue.Queue[MirrorJob] = queue.Queue(MIRROR_QUEUE)
        super().__init__(
            address, RouterHandler, component=f"router[{self.state.config['endpoint']}]", access_log=not quiet
        )
        for i in range(MIRROR_WORKERS):
            threading.Thread(target=self._mirror_worker, name=f"mirror-{i}", daemon=True).start()

    def _build(self, config: dict[str, Any], version: int) -> RouterState:
        routes = []
        for r in config["routes"]:
            parts = urlsplit(r["url"])
            host, port = parts.hostname or "", parts.port or 80
            key = (host, port, config["timeout_s"])
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = Pool(host, port, config["timeout_s"])
            routes.append(Route(r["path"], r["url"], r["weight"], parts.path.rstrip("/"), pool, is_loopback(host)))
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
            try:
                config = load_config(self.config_path)
            except ValueError as exc:
                self.last_reload_error = str(exc)
                raise
            old = self.state
            self.state = self._build(config, old.version + 1)  # atomic swap: one attribute assignment
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

    def counts_snapshot(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self.counts)

    def mirror(
        self, state: RouterState, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> None:
        for route in state.mirrors:
            if random.random() * 100 >= state.mirror_percent:
                continue
            job = MirrorJob(route, method, route.prefix + target, body,
                            {**self.upstream_headers(route, headers), "X-Mlplat-Shadow": "1"})
            try:
                self._mirror_queue.put_nowait(job)
                self.count(f"mirror_queued.{route.path}")
            except queue.Full:
                self.count(f"mirror_dropped.{route.path}")

    def upstream_headers(self, route: Route, headers: dict[str, str]) -> dict[str, str]:
        """`headers` plus the internal token for an upstream on loopback (never for a remote one)."""
        if self.internal_token and route.loopback:
            return {**headers, INTERNAL_HEADER: self.internal_token}
        return headers

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
        try:
            status, upstream_headers, data = route.pool.request(
                self.command, target, body, self.server.upstream_headers(route, headers))
        except (OSError, http.client.HTTPException) as exc:
            self.server.count(f"errors.{route.path}")
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            self.send_json(
                502,
                {"error": f"upstream '{route.path}' ({route.url}) failed: {reason}", "path": route.path},
                headers=[("X-Mlplat-Path", route.path)],
            )
        else:
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
            self.send_json(200, {"config_version": state.version, "counts": self.server.counts_snapshot()})
        else:
            raise HTTPError(404, f"no route {path}")


def main(argv: list[str] | None = None) -> int:
    block_signals()  # before any thread exists, so all threads inherit the mask
    parser = argparse.ArgumentParser(prog="router", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="router config JSON file")
    parser.add_argument("--runtime-file", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--internal-token-file", type=Path, help="token to send to upstreams on loopback")
    parser.add_argument("--quiet", action="store_true", help="no per-request log lines")
    args = parser.parse_args(argv)
    try:
        token = read_token(args.internal_token_file) if args.internal_token_file else None
        server = RouterServer((args.host, args.port), args.config, args.quiet, token)
    except (OSError, ValueError) as exc:
        print(f"router: {exc}", file=sys.stderr)
        return 2
    config = server.state.config
    info = {"kind": "router", "endpoint": config["endpoint"], "config": str(args.config.resolve())}
    return serve(server, args.runtime_file, info, on_reload=server.reload)


if __name__ == "__main__":
    sys.exit(main())
