"""toy_cloud clients for one target, and its errors turned into mlplat's. The only module importing the SDK."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from provisioner.cloud import CloudApiError, retryable
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


class Client:
    """A toy_cloud client whose every method raises translated errors; the SDK client is made lazily under a lock
    (one per target, shared by every worker thread)."""

    def __init__(self, endpoint_url: str) -> None:
        self._root = root_of(endpoint_url)
        self._api: Any = None
        self._lock = threading.Lock()

    def _sdk(self) -> Any:
        if self._api is None:
            with self._lock:
                if self._api is None:
                    from toy_cloud import ToyCloud

                    self._api = ToyCloud(self._root)
        return self._api

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._sdk(), name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except Exception as err:
                translated = translate(err, name)
                if translated is err:
                    raise
                raise translated from err

        return call
