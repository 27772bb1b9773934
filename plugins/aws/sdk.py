"""boto3 clients for one aws target, and AWS errors turned into mlplat's.

The only module of the plugin that imports boto3/botocore, and only when a provider first needs a client.
Credentials come from the standard boto3 chain (env, profile, SSO, instance role); never from the stack file.
botocore's own retries are off, and nothing here retries either: a throttled or unreachable call raises
`RetryableError` and the engine retries it — every provider call of a command (apply's writes, refresh's reads,
recovery's finds) goes through its target's `TargetCalls`, with jittered backoff, `Retry-After` and the
per-target concurrency cap, and a wait's poll treats a throttled describe as "not done yet". One retry layer:
retrying here too would multiply the attempts (5 here times 6 there) and hold a concurrency slot while sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from provisioner.errors import MlplatError, RetryableError

T = TypeVar("T")

THROTTLING_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "RequestThrottled", "RequestThrottledException", "SlowDown", "ProvisionedThroughputExceededException",
    "PriorRequestNotComplete", "ServiceUnavailable", "InternalFailure", "InternalServerError",
})
NOT_FOUND_CODES = frozenset({
    "ResourceNotFound", "ResourceNotFoundException", "NotFound", "NoSuchKey", "404", "FileSystemNotFound",
    "MountTargetNotFound", "RepositoryNotFoundException", "NoSuchBucket",
})


class AwsApiError(MlplatError):
    """An AWS API call failed; `code` is AWS's error code, the message AWS's own."""

    def __init__(self, operation: str, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{operation}: {code}: {message}")
        self.operation, self.code, self.aws_message, self.status = operation, code, message, status

    @property
    def not_found(self) -> bool:
        if self.code in NOT_FOUND_CODES or self.status == 404:
            return True
        text = self.aws_message.lower()
        return self.code == "ValidationException" and ("could not find" in text or "does not exist" in text)

    @property
    def already_exists(self) -> bool:
        text = self.aws_message.lower()
        return (self.code.endswith("AlreadyExists") or self.code.endswith("AlreadyExistsException")
                or "already exist" in text or (self.code in {"ResourceInUse", "IncompatibleParameterError"}
                and "already" in text))


def unless_missing(call: Callable[[], T]) -> T | None:
    """`call()`, or None when AWS answers that the object does not exist (reads, and deletes that may repeat)."""
    try:
        return call()
    except AwsApiError as err:
        if err.not_found:
            return None
        raise


def or_existing(create: Callable[[], T], existing: Callable[[], T]) -> T:
    """`create()`, or `existing()` when AWS answers that the object already exists (a create retried after a
    crash or a lost response, under the same name)."""
    try:
        return create()
    except AwsApiError as err:
        if not err.already_exists:
            raise
        return existing()


def translate(err: Exception, operation: str) -> Exception:
    """botocore's exceptions → AwsApiError / RetryableError / a credentials hint."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        meta = err.response.get("ResponseMetadata", {})
        code, message = str(error.get("Code", "Unknown")), str(error.get("Message", "") or err)
        status = meta.get("HTTPStatusCode")
        if code in THROTTLING_CODES or status in (429, 503):
            retry_after = (meta.get("HTTPHeaders") or {}).get("retry-after")
            return RetryableError(f"{operation}: {code}: {message}",
                                  retry_after=float(retry_after) if retry_after else None)
        return AwsApiError(operation, code, message, status)
    if isinstance(err, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)):
        return RetryableError(f"{operation}: {err}")
    if isinstance(err, NoCredentialsError):
        return MlplatError(f"{operation}: no AWS credentials found",
                           hint="configure the standard chain: AWS_PROFILE, aws sso login, env vars or an "
                                "instance role (mlplat never reads keys from the stack file)")
    return err


class Client:
    """A boto3 client whose calls raise mlplat's errors (the engine retries the retryable ones)."""

    def __init__(self, raw: Any, service: str) -> None:
        self._raw = raw
        self.service = service

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._raw, name)
        operation = self._raw.meta.method_to_api_mapping.get(name, name)

        def call(**kwargs: Any) -> Any:
            try:
                return method(**kwargs)
            except Exception as err:
                translated = translate(err, operation)
                if translated is err:
                    raise
                raise translated from None

        return call

    def paginate(self, method: str, key: str, **kwargs: Any) -> list[Any]:
        """All items of a paginated list call (the `key` list of each page)."""
        items: list[Any] = []
        token_in, token_out = _token_names(self.service)
        while True:
            page = getattr(self, method)(**kwargs)
            items.extend(page.get(key, []))
            token = page.get(token_out)
            if not token:
                return items
            kwargs[token_in] = token


def _token_names(service: str) -> tuple[str, str]:
    return {"efs": ("Marker", "NextMarker"), "ecr": ("nextToken", "nextToken"),
            "s3": ("ContinuationToken", "NextContinuationToken")}.get(service, ("NextToken", "NextToken"))


class Clients:
    """Lazily made, shared, thread-safe boto3 clients for one target (one region, one endpoint)."""

    def __init__(self, region: str, endpoint_url: str | None = None, profile: str | None = None) -> None:
        self.region, self.endpoint_url, self.profile = region, endpoint_url, profile
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()

    def __getattr__(self, service: str) -> Client:
        if service.startswith("_"):
            raise AttributeError(service)
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = self._clients[service] = Client(self._make(service), service)
            return client

    def _make(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, user_agent_extra="mlplat",
                        connect_timeout=10, read_timeout=60)
        return session.client(service, endpoint_url=self.endpoint_url, config=config)
