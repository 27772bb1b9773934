"""Clients sending requests through a front door while a migration runs: real HTTP on 127.0.0.1, every
response's route and every failure counted, bounded by a request cap and a deadline."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

BODY = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()


def invocation(url: str, suffix: str = "/invocations") -> urllib.request.Request:
    """A POST of one iris instance, as JSON (moto's SageMaker runtime 404s urllib's default form content type,
    which it routes as a query-protocol call; SageMaker passes the body on)."""
    return urllib.request.Request(url + suffix, data=BODY, method="POST", headers={"Content-Type": "application/json"})


class Load:
    """`threads` clients POSTing to `url`/invocations until stopped, `max_requests` were sent or `deadline_s`
    passed: each response's route (X-Mlplat-Path: the front door's route, i.e. the upstream's target), each
    non-200 and connection error, and the first bodies of each route."""

    def __init__(self, url: str, threads: int = 8, max_requests: int = 60_000, deadline_s: float = 300) -> None:
        self.url = url
        self.served: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self._max, self._deadline = max_requests, time.monotonic() + deadline_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _count(self) -> int:
        with self._lock:
            return len(self.served) + len(self.failures)

    def _run(self) -> None:
        while not self._stop.is_set() and self._count() < self._max and time.monotonic() < self._deadline:
            try:
                with urllib.request.urlopen(invocation(self.url), timeout=10) as resp:
                    route = resp.headers.get("X-Mlplat-Path", "?")
                    payload = resp.read()
                with self._lock:
                    self.served.append((time.monotonic(), route))
                    if len(self.bodies) < 200 or route != self.bodies[-1].get("_route"):
                        self.bodies.append({"_route": route, "body": payload.decode(errors="replace")})
            except urllib.error.HTTPError as err:
                with self._lock:
                    self.failures.append(f"{err.code} from {err.headers.get('X-Mlplat-Path')}: "
                                         f"{err.read()[:200]!r}")
            except OSError as err:
                with self._lock:
                    self.failures.append(f"connection: {err}")
            time.sleep(0.005)  # bounded: at most ~200 requests a second per thread

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def routes(self) -> Counter[str]:
        with self._lock:
            return Counter(route for _, route in self.served)

    def last(self, n: int) -> Counter[str]:
        with self._lock:
            return Counter(route for _, route in self.served[-n:])
