"""Calls to a target's cloud: concurrency and rate limits, retries with backoff, and waits on long operations.

Every provider call of a command — apply's writes, preview's and refresh's reads, recovery's finds — goes
through its target's `TargetCalls`: a slot among the target's `max_concurrency` (held only while a call is in
flight: a retry's backoff and a wait's polling interval give it back), a place in its calls-per-second budget,
and retries of transient failures with full-jitter backoff (`Retry-After` honoured). A `StepContext` is what one
provider call gets from the engine: its idempotency token, the ids that are not its object, a way to checkpoint a
long-running operation, and `wait`, which polls that operation until done, timeout or Ctrl-C.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from provisioner import faults, progress
from provisioner.errors import MlplatError, ProviderError, RetryableError, StateError

if TYPE_CHECKING:
    from provisioner.provider import ResourceProvider

T = TypeVar("T")
#: (target, kind, operation) -> seconds its cloud operation may take, from the target's `timeouts:` (None: unset)
TimeoutFor = Callable[[str, str, str], float | None]

#: seconds a wait may take when neither the provider nor the target says (one hour)
DEFAULT_TIMEOUT = 3600.0
OPERATIONS = ("create", "update", "delete")


class Interrupted(MlplatError):
    """Ctrl-C: the engine stopped starting steps and stopped waiting; in-flight steps stay journalled."""

    exit_code = 130


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt))  # full jitter


class RateLimiter:
    """At most `per_s` calls start per second, spaced evenly (a token bucket with a burst of one)."""

    def __init__(self, per_s: float) -> None:
        self.interval = 1.0 / per_s
        self._next = 0.0
        self._lock = threading.Lock()

    def wait_turn(self, stop: threading.Event) -> None:
        with self._lock:
            now = time.monotonic()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now and stop.wait(at - now):
            raise Interrupted("interrupted while waiting for the target's rate limit")


class TargetCalls:
    """The limits and retries of one target's provider calls (shared by every worker thread of a command)."""

    def __init__(self, name: str, *, concurrency: int, calls_per_s: float | None = None,
                 retry: RetryPolicy | None = None, stop: threading.Event | None = None,
                 on_retry: Callable[[str, str, str], None] | None = None) -> None:
        self.name = name
        self.concurrency = max(1, concurrency)
        self.retry = retry or RetryPolicy()
        self.stop = stop or threading.Event()
        self.on_retry = on_retry
        self._slots = threading.Semaphore(self.concurrency)
        self._rate = RateLimiter(calls_per_s) if calls_per_s else None
        self._held = threading.local()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One call in flight: wait for the rate limit, then for a free slot."""
        if self.stop.is_set():
            raise Interrupted("interrupted")
        if self._rate is not None:
            self._rate.wait_turn(self.stop)
        self._slots.acquire()
        self._held.depth = getattr(self._held, "depth", 0) + 1
        try:
            yield
        finally:
            self._held.depth -= 1
            self._slots.release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Give this thread's slot back for a while (a wait sleeping between polls); a no-op if none is held."""
        if not getattr(self._held, "depth", 0):
            yield
            return
        self._held.depth -= 1
        self._slots.release()
        try:
            yield
        finally:
            self._slots.acquire()
            self._held.depth += 1

    def sleep(self, seconds: float) -> None:
        """Sleep without a slot; Ctrl-C cuts it short with Interrupted."""
        with self.released():
            if self.stop.wait(seconds):
                raise Interrupted("interrupted")

    def call(self, address: str, op: str, fn: Callable[[], T]) -> T:
        """`fn()` in a slot, retried on RetryableError; other failures become a ProviderError naming `address`."""
        policy = self.retry
        held = self._held
        for attempt in range(policy.attempts):
            try:
                if self.stop.is_set():
                    raise Interrupted("interrupted")
                if self._rate is not None:
                    self._rate.wait_turn(self.stop)
                self._slots.acquire()  # `slot()` inlined: this runs once per provider call
                held.depth = getattr(held, "depth", 0) + 1
                try:
                    return fn()
                finally:
                    held.depth -= 1
                    self._slots.release()
            except RetryableError as err:
                if attempt == policy.attempts - 1:
                    raise ProviderError(address, f"{op} failed after {policy.attempts} attempts: {err}") from None
                delay = policy.delay(attempt, err.retry_after)
                if self.on_retry is not None:
                    self.on_retry(address, op, f"{err} (retrying in {delay:.1f}s)")
                self.sleep(delay)
            except (ProviderError, Interrupted, StateError):
                raise
            except Exception as err:  # a provider/SDK failure: name the resource and the cloud's message
                raise ProviderError(address, f"{op} failed: {err}") from err
        raise AssertionError("unreachable")


@dataclass
class StepContext:
    """What one provider call gets from the engine (see ResourceProvider's contract)."""

    address: str
    op: str  # create | update | delete | find
    #: idempotency token of this step, minted by the engine and journalled before the call
    token: str = ""
    #: ids that are not this step's object (the current one during a replace, deposed ones)
    exclude: frozenset[str] = frozenset()
    #: replace_mode "in_place_recreate": the id of the object this create replaces
    replacing: str | None = None
    #: a long-running operation checkpointed before a crash: wait on it instead of issuing a new one
    operation: str | None = None
    #: seconds this operation may take (the provider's default, or the target's `timeouts:`)
    timeout: float | None = None
    calls: TargetCalls | None = None
    on_checkpoint: Callable[[str], None] | None = field(default=None, repr=False)

    def checkpoint(self, operation: str) -> None:
        """Journal a cloud operation id before waiting on it: after a crash, recovery resumes the wait."""
        self.operation = operation
        if self.on_checkpoint is not None:
            self.on_checkpoint(operation)

    def wait(self, check: Callable[[], tuple[bool, T]], *, what: str, interval: float = 5.0,
             max_interval: float = 30.0, timeout: float | None = None) -> T:
        """Poll `check() -> (done, status)` until done, backing off from `interval` to `max_interval`.

        Between polls the target's concurrency slot is released; each poll takes a slot and a rate-limit turn.
        A throttled poll counts as "not done yet". Raises WaitTimeout after the timeout, Interrupted on Ctrl-C
        (the cloud operation goes on; recovery resumes waiting on the checkpointed id). `check` raises to fail.
        """
        limit = timeout if timeout is not None else (self.timeout or DEFAULT_TIMEOUT)
        calls = self.calls

        def poll_once() -> tuple[bool, T | str]:
            try:
                if calls is None:
                    done, status = check()
                else:
                    with calls.slot():
                        done, status = check()
            except RetryableError as err:
                done, status = False, f"throttled ({err})"
            faults.reached("poll")
            return done, status

        def pause(seconds: float) -> None:
            if calls is None:
                time.sleep(seconds)
            elif calls.stop.wait(seconds):
                raise Interrupted(f"interrupted while waiting: {what}")

        if calls is None:
            return progress.poll(poll_once, what=what, timeout=limit, interval=interval, max_interval=max_interval,
                                 sleep=pause)  # type: ignore[return-value]
        with calls.released():  # the slot of the call that started the operation: polls take their own
            return progress.poll(poll_once, what=what, timeout=limit, interval=interval, max_interval=max_interval,
                                 sleep=pause)  # type: ignore[return-value]


def operation_timeout(provider: ResourceProvider, timeout_for: TimeoutFor | None, target: str, kind: str,
                      op: str) -> float | None:
    """Seconds a `kind` operation may wait: the target's `timeouts:` setting, else the provider's own default."""
    timeout = timeout_for(target, kind, op) if timeout_for is not None else None
    return timeout if timeout is not None else provider.timeouts.get(op)


def detached(address: str, op: str = "create", **values: Any) -> StepContext:
    """A context outside any apply (tests, tools calling a provider directly): no limits, no journal."""
    return StepContext(address, op, **values)


class CallGates:
    """One `TargetCalls` per target, made on first use from a command's limits."""

    def __init__(self, *, parallelism: int, per_target: dict[str, int] | None = None,
                 per_second: dict[str, float] | None = None, retry: RetryPolicy | None = None,
                 stop: threading.Event | None = None,
                 on_retry: Callable[[str, str, str], None] | None = None) -> None:
        self.parallelism = max(1, parallelism)
        self.per_target = per_target or {}
        self.per_second = per_second or {}
        self.retry = retry or RetryPolicy()
        self.stop = stop or threading.Event()
        self.on_retry = on_retry
        self._gates: dict[str, TargetCalls] = {}
        self._lock = threading.Lock()

    def __call__(self, target: str) -> TargetCalls:
        gate = self._gates.get(target)
        if gate is None:
            with self._lock:
                gate = self._gates.get(target)
                if gate is None:
                    gate = self._gates[target] = TargetCalls(
                        target, concurrency=self.per_target.get(target, self.parallelism),
                        calls_per_s=self.per_second.get(target), retry=self.retry, stop=self.stop,
                        on_retry=self.on_retry)
        return gate
