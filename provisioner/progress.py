"""Progress from inside a provider call, and bounded polling for long cloud operations.

The engine runs each step on a worker thread and binds a reporter to it; a provider calls `report("...")`
(e.g. "endpoint Creating → InService, 40 s") without knowing about events, threads or the CLI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from provisioner.errors import MlplatError

T = TypeVar("T")
_local = threading.local()


def bind(reporter: Callable[[str, dict[str, Any]], None] | None) -> None:
    """Called by the engine around each provider call on its worker thread."""
    _local.reporter = reporter


def report(message: str, **data: Any) -> None:
    """Emit a progress event for the resource being worked on; a no-op outside an apply."""
    reporter = getattr(_local, "reporter", None)
    if reporter is not None:
        reporter(message, data)


class WaitTimeout(MlplatError):
    """A long operation did not reach its goal within its bound."""


def poll(check: Callable[[], tuple[bool, T]], *, what: str, timeout: float, interval: float = 5.0,
         max_interval: float = 30.0, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `check()` -> (done, value) until done, backing off up to `max_interval`, reporting progress.

    Raises WaitTimeout after `timeout` seconds; `check` raises to fail fast (e.g. status Failed).
    """
    started = clock()
    delay = interval
    while True:
        done, value = check()
        elapsed = clock() - started
        if done:
            return value
        if elapsed >= timeout:
            raise WaitTimeout(f"{what}: not done after {elapsed:.0f}s (last seen: {value})",
                              hint="the operation may still finish; raise this kind's limit with the target's "
                                   "`timeouts:` setting, or run mlplat refresh later to see")
        report(f"{what}: {value} ({elapsed:.0f}s)", elapsed=elapsed, status=value)
        sleep(min(delay, max(0.0, timeout - elapsed)))
        delay = min(delay * 1.5, max_interval)
