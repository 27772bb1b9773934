"""boto3 clients for one aws target, and AWS errors turned into mlplat's.

The only module of the plugin that imports boto3/botocore, and only when a provider first needs a client.
Credentials come from the standard boto3 chain (env, profile, SSO, instance role); never from the stack file.
botocore's own retries are off, and nothing here retries either: a throttled or unreachable call raises
`RetryableError` (by `provisioner.cloud.retryable`, the rule every plugin shares) and the engine retries it —
every provider call of a command (apply's writes, refresh's reads, recovery's finds) goes through its target's
`TargetCalls`, with jittered backoff, `Retry-After` and the per-target concurrency cap, and a wait's poll treats a
throttled describe as "not done yet". One retry layer: retrying here too would multiply the attempts (5 here times
6 there) and hold a concurrency slot while sleeping.
"""

from __future__ import annotations

import threading
from typing import Any

from provisioner.cloud import CloudApiError, TranslatedClient, retryable
from provisioner.errors import MlplatError, RetryableError

THROTTLING_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "RequestThrottled", "RequestThrottledException", "SlowDown", "ProvisionedThroughputExceededException",
    "PriorRequestNotComplete", "ServiceUnavailable", "InternalFailure", "InternalServerError",
})
NOT_FOUND_CODES = frozenset({
    "ResourceNotFound", "ResourceNotFoundException", "NotFound", "NoSuchKey", "404", "FileSystemNotFound",
    "MountTargetNotFound", "RepositoryNotFoundException", "NoSuchBucket", "NoSuchHostedZone", "NoSuchHealthCheck",
})


class AwsApiError(CloudApiError):
    """An AWS API call failed; `code` is AWS's error code, the message AWS's own. AWS's rules refine the core's:
    SageMaker says "not found" with a ValidationException, and "already exists" is read from codes and messages,
    never from a 409 (EFS answers FileSystemInUse and MountTargetConflict with 409s)."""

    not_found_codes = NOT_FOUND_CODES

    @property
    def aws_message(self) -> str:
        return self.cloud_message

    @property
    def not_found(self) -> bool:
        if super().not_found:
            return True
        text = self.cloud_message.lower()
        return self.code == "ValidationException" and ("could not find" in text or "does not exist" in text
                                                       or "not found" in text)

    @property
    def already_exists(self) -> bool:
        text = self.cloud_message.lower()
        return (self.code.endswith("AlreadyExists") or self.code.endswith("AlreadyExistsException")
                or "already exist" in text or (self.code in {"ResourceInUse", "IncompatibleParameterError"}
                and "already" in text))


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
        transient = retryable(status, (meta.get("HTTPHeaders") or {}).get("retry-after"),
                              f"{operation}: {code}: {message}", throttled=code in THROTTLING_CODES)
        return transient or AwsApiError(operation, code, message, status)
    if isinstance(err, (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError)):
        return RetryableError(f"{operation}: {err}")
    if isinstance(err, NoCredentialsError):
        return MlplatError(f"{operation}: no AWS credentials found",
                           hint="configure the standard chain: AWS_PROFILE, aws sso login, env vars or an "
                                "instance role (mlplat never reads keys from the stack file)")
    return err


class Client(TranslatedClient):
    """A boto3 client whose calls raise mlplat's errors (the engine retries the retryable ones)."""

    def __init__(self, raw: Any, service: str) -> None:
        super().__init__(raw, translate)
        self.service = service

    def operation(self, method: str) -> str:
        return self._raw.meta.method_to_api_mapping.get(method, method)

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
    return {"efs": ("Marker", "NextMarker"), "ecr": ("nextToken", "nextToken"), "route53": ("Marker", "NextMarker"),
            "s3": ("ContinuationToken", "NextContinuationToken")}.get(service, ("NextToken", "NextToken"))


class Clients:
    """Lazily made, shared, thread-safe boto3 clients for one target (one region, one endpoint)."""

    def __init__(self, region: str, endpoint_url: str | None = None, profile: str | None = None) -> None:
        self.region, self.endpoint_url, self.profile = region, endpoint_url, profile
        self._clients: dict[str, Client] = {}
        self._session: Any = None
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
        import botocore.session
        from botocore.config import Config

        if self._session is None:  # one session per target; the parsed service models shared by every session
            core = botocore.session.get_session()
            core.register_component("data_loader", _shared_loader())
            self._session = boto3.session.Session(botocore_session=core, profile_name=self.profile,
                                                  region_name=self.region)
        session = self._session
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, user_agent_extra="mlplat",
                        connect_timeout=10, read_timeout=60)
        return session.client(service, endpoint_url=self.endpoint_url, config=config)


_loaders: dict[str | None, Any] = {}


def _shared_loader() -> Any:
    """One botocore data loader per data path for the process: it caches the parsed service models (read-only
    JSON, ~0.2 s to parse per service), which a fresh loader per session would parse again for every Stack."""
    import os

    from botocore.loaders import create_loader

    path = os.environ.get("AWS_DATA_PATH")  # what botocore's own session would search as well
    if path not in _loaders:
        _loaders[path] = create_loader(path)
    return _loaders[path]
