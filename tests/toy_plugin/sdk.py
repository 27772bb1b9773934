"""toy_cloud clients for one target, and its errors turned into mlplat's. The only module importing the SDK."""

from __future__ import annotations

from provisioner.cloud import CloudApiError, TranslatedClient, retryable
from provisioner.errors import RetryableError


class ToyApiError(CloudApiError):
    """The toy answers FAILED_PRECONDITION (400) while an object is busy: not "exists", not "missing"."""


def translate(err: Exception, operation: str) -> Exception:
    from toy_cloud import ToyError  # imported here, never at module level

    if isinstance(err, ToyError):
        return (retryable(err.status, err.retry_after, f"{operation}: {err.code}: {err.message}")
                or ToyApiError(operation, err.code, err.message, err.status))
    if isinstance(err, (ConnectionError, TimeoutError)):
        return RetryableError(f"{operation}: {err}")
    return err


def root_of(endpoint_url: str) -> str:
    """The toy cloud's directory: `file:///path` or a plain path."""
    return endpoint_url.removeprefix("file://")


class Client(TranslatedClient):
    """A toy_cloud client whose every method raises translated errors (made once per target, lazily, under the
    target's lock: `ToyTarget.client`)."""

    def __init__(self, endpoint_url: str) -> None:
        from toy_cloud import ToyCloud  # imported here, never at module level

        super().__init__(ToyCloud(root_of(endpoint_url)), translate)
