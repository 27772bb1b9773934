"""User-facing errors. Every error a user can cause is a `MlplatError`; the CLI prints it without a traceback."""

from __future__ import annotations


class MlplatError(Exception):
    """Base class: `str(err)` is the message, `hint` tells the user what to do about it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class SpecError(MlplatError):
    """The stack file is wrong; carries one or more located problems (file:line:col)."""

    def __init__(self, problems: list[str], *, hint: str | None = None,
                 reasons: list[dict[str, str]] | None = None) -> None:
        self.problems = problems
        #: capability refusals, structured ({"at": file:line:col, "path", "code", "message"}) for --json
        self.reasons = reasons or []
        super().__init__("\n".join(problems), hint=hint)


class UnknownAccelerator(MlplatError):
    """An accelerator name the catalog does not know."""


class NotOffered(MlplatError):
    """The catalog knows the accelerator but the target does not offer it (or not with that GPU count)."""


class CapabilityError(MlplatError):
    """A component asks for something its target cannot do (checked at validate/preview)."""


class PlanError(MlplatError):
    """A plan cannot be made or applied (stale saved plan, cycle, unknown resource kind...)."""


class StateError(MlplatError):
    """The state cannot be read or written."""


class LockHeld(StateError):
    """Another process holds the stack's lock."""


class ProviderError(MlplatError):
    """A cloud/provider call failed; the message names the resource address and the provider's message."""

    def __init__(self, address: str, message: str, *, hint: str | None = None) -> None:
        self.address = address
        super().__init__(f"{address}: {message}", hint=hint)


class RetryableError(Exception):
    """Raised by providers for transient failures (throttling, 429, 5xx); the engine retries with backoff.

    `retry_after` (seconds) is honoured when the cloud gave one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
