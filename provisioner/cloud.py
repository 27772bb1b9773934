"""What every cloud plugin's providers need, with no SDK: the cloud's errors, which failures are retried, adopt-or-
create, find-by-derived-name, and waits on long operations through the engine.

A plugin's `sdk.py` (the one module that imports its SDK) turns the SDK's exceptions into `CloudApiError` (or a
subclass refining `not_found` / `already_exists`) and, through `retryable`, into `RetryableError`; its providers
then use the helpers below the same way on every cloud. Nothing here retries: the engine does (see `retryable`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from provisioner.errors import MlplatError, RetryableError

if TYPE_CHECKING:
    from provisioner.operations import StepContext

T = TypeVar("T")

#: HTTP statuses worth retrying: timeouts, throttling and the server's transient failures (every 5xx but 501 Not
#: Implemented and 505, which a retry cannot fix)
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, *range(506, 600)})


class CloudApiError(MlplatError):
    """A cloud API call failed for good: `operation` (the API's name for it), the cloud's error `code` and
    `cloud_message`, and the HTTP `status` where there was one.

    `not_found` and `already_exists` are what providers branch on (`unless_missing`, `or_existing`). The defaults
    read the HTTP status (404, 409) and a few common codes; a plugin's subclass adds its cloud's codes
    (`not_found_codes`, `already_exists_codes`) or overrides a property where its cloud answers 404/409 for other
    things (Kubernetes' resourceVersion `Conflict` and GCP's `ABORTED` are 409s that do not mean "exists").
    """

    not_found_codes: ClassVar[frozenset[str]] = frozenset({"NotFound", "NOT_FOUND", "ResourceNotFound",
                                                           "ResourceNotFoundException"})
    already_exists_codes: ClassVar[frozenset[str]] = frozenset({"AlreadyExists", "ALREADY_EXISTS",
                                                                "ResourceExists", "ResourceAlreadyExists"})

    def __init__(self, operation: str, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.operation, self.code, self.cloud_message, self.status = operation, code, message, status

    @property
    def not_found(self) -> bool:
        return self.status == 404 or self.code in self.not_found_codes

    @property
    def already_exists(self) -> bool:
        return self.status == 409 or self.code in self.already_exists_codes


def retryable(status: int | None, retry_after: str | float | None = None, message: str = "", *,
              throttled: bool = False) -> RetryableError | None:
    """The `RetryableError` a failed call becomes, or None when retrying cannot help (then raise a CloudApiError).

    The one rule every plugin's translate uses: 408, 429 and the transient 5xx (`RETRYABLE_STATUSES`), or
    `throttled=True` for a cloud that throttles with its own code on another status (AWS's json APIs answer
    ThrottlingException with a 400). `retry_after` is the response's Retry-After header (seconds or an HTTP date),
    which the engine honours. Plugins never retry themselves: every provider call goes through the engine's
    `TargetCalls` (jittered backoff, Retry-After, the target's concurrency cap), and a wait's poll counts a throttled
    describe as "not done yet"; a second retry layer in a plugin would multiply the attempts and hold a concurrency
    slot while it sleeps. Connection failures and read timeouts are retryable too: raise `RetryableError` for them.
    """
    if not throttled and status not in RETRYABLE_STATUSES:
        return None
    return RetryableError(message, retry_after=retry_after_seconds(retry_after))


def retry_after_seconds(value: str | float | None) -> float | None:
    """A Retry-After value in seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if value is None or value == "":
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        return max(0.0, parsedate_to_datetime(str(value)).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def unless_missing(call: Callable[[], T]) -> T | None:
    """`call()`, or None when the cloud answers that the object does not exist (reads, and deletes that may
    repeat: a delete retried after a lost response finds nothing, which is success)."""
    try:
        return call()
    except CloudApiError as err:
        if err.not_found:
            return None
        raise


def or_existing(create: Callable[[], T], existing: Callable[[], T]) -> T:
    """`create()`, or `existing()` when the cloud answers that the object already exists: a create retried after
    a crash or a lost response, under the same derived name (adopt-or-create). `existing` should check the object
    is this step's (`find_own`) when a stranger's could hold the name."""
    try:
        return create()
    except CloudApiError as err:
        if not err.already_exists:
            raise
        return existing()


def find_own(name: str, ctx: StepContext, lookup: Callable[[], T | None], token_of: Callable[[T], str | None]
             ) -> T | None:
    """`find` for an object keyed by a name derived from its address or inputs: what the create carrying
    `ctx.token` made, or None.

    An address alone cannot tell a replacement from its predecessor (both may be looked up by the same name), so:
    never an object whose name is in `ctx.exclude` (the current object of a replace, deposed ones), and given
    `ctx.token` only the one whose recorded token (`token_of`: its tag or label) equals it. `lookup()` describes
    the object, None (or a not-found CloudApiError) when absent; it is not called for an excluded name.
    """
    if name in ctx.exclude:
        return None
    found = unless_missing(lookup)
    if found is None or (ctx.token and token_of(found) != ctx.token):
        return None
    return found


# -- long operations --------------------------------------------------------------------------------------------
# A provider issues the call, checkpoints it (`ctx.checkpoint(operation_id(...))`), then waits with `ctx.wait`,
# which gives the target's concurrency slot back between polls, honours the kind's timeout and stops on Ctrl-C.
# Given `ctx.operation` (a step resumed after a crash), it waits on that operation instead of issuing it again.


def operation_id(action: str, *ids: str) -> str:
    """The id a step checkpoints for a cloud operation it started: the API action and the object(s) it acts on
    (or the cloud's own operation name). Ids must not contain spaces."""
    return " ".join((action, *ids))


def operation_of(ctx: StepContext, action: str) -> list[str] | None:
    """The object ids of `ctx.operation` when it is an `action` operation (a step resumed after a crash)."""
    if not ctx.operation:
        return None
    parts = ctx.operation.split(" ")
    return parts[1:] if parts[0] == action and len(parts) > 1 else None


def wait_for_status(ctx: StepContext, describe: Callable[[], T | None], what: str, phase: str, *,
                    ready: str | Collection[str], failed: str | Collection[str] = (),
                    status_of: Callable[[T], str], reason_of: Callable[[T], str | None] = lambda _: None,
                    interval: float = 5.0, max_interval: float = 60.0) -> T:
    """Poll `describe()` through `ctx.wait` until `status_of` says `ready`; returns the last description.

    Fails fast (MlplatError) on a `failed` status, with `reason_of`'s text, and when the object vanishes
    (`describe` returns None or raises not-found): waiting on it longer could only time out. `phase` names what
    is under way ("Creating", "Updating") in progress lines and errors.
    """
    ready_in = (ready,) if isinstance(ready, str) else tuple(ready)
    failed_in = (failed,) if isinstance(failed, str) else tuple(failed)

    def check() -> tuple[bool, Any]:
        seen = unless_missing(describe)
        if seen is None:
            raise MlplatError(f"{what} disappeared while {phase.lower()}")
        status = status_of(seen)
        if status in failed_in:
            raise MlplatError(f"{what} is {status}: {reason_of(seen) or 'no reason given'}")
        return (True, seen) if status in ready_in else (False, status)

    return ctx.wait(check, what=f"{what} {phase} → {'/'.join(ready_in)}", interval=interval,
                    max_interval=max_interval)


def wait_gone(ctx: StepContext, describe: Callable[[], Any], what: str, *, interval: float = 5.0,
              max_interval: float = 60.0) -> None:
    """Poll `describe()` through `ctx.wait` until the object is gone (None, or a not-found error)."""
    ctx.wait(lambda: (unless_missing(describe) is None, "Deleting"), what=f"{what} deleted", interval=interval,
             max_interval=max_interval)


def delete_and_wait(ctx: StepContext, action: str, id: str, delete: Callable[[], Any], describe: Callable[[], Any],
                    what: str, *, interval: float = 5.0, max_interval: float = 60.0) -> bool:
    """A long delete: issue it (unless resuming its checkpoint), checkpoint it, wait until the object is gone.
    False when the object was gone already (nothing was issued), so the caller can skip its own cleanup."""
    if operation_of(ctx, action) is None:
        try:
            delete()
        except CloudApiError as err:
            if err.not_found:
                return False
            raise
        ctx.checkpoint(operation_id(action, id))
    wait_gone(ctx, describe, what, interval=interval, max_interval=max_interval)
    return True


def content_name(base: str, inputs: dict[str, Any], *ignore: str) -> str:
    """`base-<8 hex of a hash of inputs>`: for an immutable object under a caller-chosen name, a replacement gets
    a new name (so create-before-destroy works) and a retried create the same one (so it is idempotent). The
    input `base_name` (where the lowering passes `base` in) and the `ignore`d ones are left out of the hash."""
    content = {k: v for k, v in inputs.items() if k not in ignore and k != "base_name"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{base}-{digest}"


def split_percent(weights: dict[str, float]) -> dict[str, int]:
    """Weights → integer percentages summing to 100 (largest remainder), as clouds' traffic splits want them
    (Vertex AI's traffic_split, Azure ML's traffic); all-zero weights give all zeros."""
    total = sum(max(w, 0.0) for w in weights.values())
    if total <= 0:
        return {k: 0 for k in weights}
    exact = {k: max(w, 0.0) * 100 / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:100 - sum(out.values())]:
        out[k] += 1
    return out


def slug(text: str) -> str:
    """`text` in lower case with every character that is not a letter or digit a dash, none at either end."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def cloud_name(*parts: str, limit: int = 63, digest: int = 8, letter_first: bool = False) -> str:
    """A name clouds accept, derived from `parts`: their slugs joined by dashes (`[a-z0-9-]`), at most `limit`
    characters; a longer one keeps its start and `digest` hex of a hash of the whole text, so it stays unique.
    `letter_first`: prefixed `m-` unless it starts with a letter (Google and Azure ids)."""
    text = "-".join(slug(p) for p in parts if p)
    if letter_first and not text[:1].isalpha():
        text = f"m-{text}"
    if len(text) <= limit:
        return text
    hashed = hashlib.sha256(text.encode()).hexdigest()[:digest]
    return f"{text[:limit - digest - 1].rstrip('-')}-{hashed}"


class TranslatedClient:
    """An SDK client whose every method raises mlplat's errors: `translate(err, operation)` maps an SDK exception
    to a `CloudApiError` / `RetryableError` / `MlplatError` (returning it unchanged lets it through). Each plugin's
    sdk.py wraps its clients in this (or a subclass naming operations its own way), so no provider sees an SDK
    exception and the engine's retries see `RetryableError`."""

    def __init__(self, raw: Any, translate: Callable[[Exception, str], Exception]) -> None:
        self._raw = raw
        self._translate = translate

    def operation(self, method: str) -> str:
        """The API operation a method calls, as errors name it (default: the method's name)."""
        return method

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._raw, name)
        operation = self.operation(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception as err:
                translated = self._translate(err, operation)
                if translated is err:
                    raise
                raise translated from None

        return call
