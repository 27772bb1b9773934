"""Azure clients for one azure target, and Azure's errors turned into mlplat's.

The only module of the plugin that imports the Azure SDKs, and only when a provider first needs a client:
azure-ai-ml's `MLClient` (Azure Resource Manager: computes, datastores, models, online endpoints and deployments,
schedules) and the storage data-plane clients (azure-storage-blob for artifacts, azure-storage-file-share for nas
shares). Credentials come from `DefaultAzureCredential` only (environment, workload identity, managed identity,
Azure CLI...), never from the stack file. azure-core's own retries are off (`retry_total=0`): the engine retries
what `translate` calls retryable (429 with Retry-After, 5xx, connection errors).

`endpoint_url` (tests): every request of every client, the credential's token requests included, is sent to that
server instead, with its URL's scheme and host replaced and the original host kept in the Host header
(`RedirectTransport`). It is the narrowest seam azure-ai-ml allows: azure-core refuses bearer tokens over plain
http, and the storage clients build `https://<account>.blob.core.windows.net` URLs that no local DNS resolves; the
SDK above the transport (models, serialization, polling, authentication) is the real one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from provisioner.cloud import CloudApiError, TranslatedClient, retryable
from provisioner.errors import MlplatError, RetryableError

ARM_SCOPE = "https://management.azure.com/.default"
STORAGE_SCOPE = "https://storage.azure.com/.default"
#: Azure error codes that mean "try again"
TRANSIENT_CODES = frozenset({"TooManyRequests", "ServerBusy", "InternalServerError", "ServiceUnavailable",
                             "OperationPreempted", "RetryableError"})


class AzureApiError(CloudApiError):
    """An Azure call failed; `code` is ARM's (or the storage service's) error code, the message Azure's own."""

    not_found_codes = CloudApiError.not_found_codes | {"ResourceNotFound", "NotFound", "UserError.NotFound",
                                                       "ShareNotFound", "BlobNotFound", "ContainerNotFound",
                                                       "ResourceGroupNotFound"}
    already_exists_codes = CloudApiError.already_exists_codes | {"ShareAlreadyExists", "BlobAlreadyExists",
                                                                 "Conflict"}

    @property
    def already_exists(self) -> bool:
        return self.code in self.already_exists_codes


def translate(err: Exception, operation: str) -> Exception:
    """azure-core / azure-identity / azure-ai-ml exceptions → AzureApiError / RetryableError / a credentials hint."""
    from azure.core import exceptions as core

    if isinstance(err, core.ClientAuthenticationError) and getattr(err, "status_code", None) is None:
        return MlplatError(f"{operation}: no Azure credentials found ({_first_line(err)})",
                           hint="sign in with `az login`, or set AZURE_CLIENT_ID / AZURE_TENANT_ID / "
                                "AZURE_CLIENT_SECRET (mlplat never reads keys from the stack file)")
    if isinstance(err, core.HttpResponseError):
        status = err.status_code
        error = getattr(err, "error", None)
        code = (getattr(error, "code", None) or getattr(err, "error_code", None) or
                (err.reason if isinstance(err.reason, str) else None) or str(status))
        code = getattr(code, "value", code)  # the storage clients' StorageErrorCode is a str enum
        message = getattr(error, "message", None) or _first_line(err)
        response = getattr(err, "response", None)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        transient = retryable(status, retry_after, f"{operation}: {code}: {message}",
                              throttled=code in TRANSIENT_CODES)
        return transient or AzureApiError(operation, str(code), str(message), status)
    if isinstance(err, (core.ServiceRequestError, core.ServiceResponseError)):
        return RetryableError(f"{operation}: {err}")
    if type(err).__name__ in ("ValidationException", "UserErrorException"):  # azure-ai-ml's own checks
        return MlplatError(f"{operation}: {_first_line(err)}")
    return err


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


class Client(TranslatedClient):
    """An MLClient operations group (or a storage client) whose calls raise mlplat's errors."""

    def __init__(self, raw: Any, name: str) -> None:
        super().__init__(raw, translate)
        self.name = name

    def operation(self, method: str) -> str:
        return f"{self.name}.{method}"


def redirect_transport(endpoint_url: str) -> Any:
    """An azure-core transport sending every request to `endpoint_url` (scheme, host and port), the original
    host in the Host header and `X-Mlplat-Original-Host`."""
    from azure.core.pipeline.transport import RequestsTransport

    target = urlsplit(endpoint_url)

    class RedirectTransport(RequestsTransport):  # type: ignore[misc]
        def send(self, request: Any, **kwargs: Any) -> Any:
            original = request.url  # put back after: a poller reuses the request's URL, and must see https
            parts = urlsplit(original)
            request.headers["X-Mlplat-Original-Host"] = parts.netloc
            request.url = parts._replace(scheme=target.scheme, netloc=target.netloc).geturl()
            try:
                return super().send(request, **kwargs)
            finally:
                request.url = original

    return RedirectTransport()


class Clients:
    """Lazily made, shared, thread-safe clients for one workspace: `ml` (MLClient), `credential`, `blob(account)`,
    `share(account)` (the storage service clients)."""

    def __init__(self, subscription: str, resource_group: str, workspace: str, endpoint_url: str | None = None) -> None:
        self.subscription, self.resource_group, self.workspace = subscription, resource_group, workspace
        self.endpoint_url = endpoint_url
        self._lock = threading.Lock()
        self._credential: Any = None
        self._ml: Any = None
        self._storage: dict[tuple[str, str], Any] = {}

    def kwargs(self) -> dict[str, Any]:
        """What every Azure client is made with: no SDK retries, and the test transport where set."""
        out: dict[str, Any] = {"retry_total": 0}
        if self.endpoint_url:
            out["transport"] = redirect_transport(self.endpoint_url)
        return out

    @property
    def credential(self) -> Any:
        with self._lock:
            if self._credential is None:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential(exclude_interactive_browser_credential=True,
                                                          **self.kwargs())
            return self._credential

    @property
    def ml(self) -> Any:
        credential = self.credential
        with self._lock:
            if self._ml is None:
                from azure.ai.ml import MLClient

                # azure-ai-ml logs every failed call (a 404 of an existence check included) at ERROR before it
                # raises; mlplat reports the raised error itself, with the address
                logging.getLogger("azure.ai.ml").setLevel(logging.CRITICAL)
                _quiet_polling()
                self._ml = MLClient(credential, self.subscription, self.resource_group, self.workspace,
                                    enable_telemetry=False, show_progress=False, **self.kwargs())
            return self._ml

    def group(self, name: str) -> Client:
        """An MLClient operations group (`compute`, `models`, `online_endpoints`, ...) with translated errors."""
        return Client(getattr(self.ml, name), name)

    def blob(self, account: str) -> Client:
        return self._service("blob", account)

    def share(self, account: str) -> Client:
        return self._service("file", account)

    def _service(self, kind: str, account: str) -> Client:
        credential = self.credential
        with self._lock:
            client = self._storage.get((kind, account))
            if client is None:
                url = f"https://{account}.{kind}.core.windows.net"
                if kind == "blob":
                    from azure.storage.blob import BlobServiceClient

                    raw = BlobServiceClient(url, credential=credential, **self.kwargs())
                else:
                    from azure.storage.fileshare import ShareServiceClient

                    raw = ShareServiceClient(url, credential=credential, token_intent="backup", **self.kwargs())
                client = self._storage[(kind, account)] = Client(raw, f"{kind}:{account}")
            return client


def _quiet_polling() -> None:
    """azure-ai-ml's endpoint and deployment pollers (`AzureMLPolling`) print "." to stdout on every poll, from the
    poller's own thread: that would land in the middle of `mlplat ... --json` output. mlplat reports progress
    itself, so their status update keeps its polling and drops the print."""
    from azure.ai.ml._utils import _azureml_polling
    from azure.mgmt.core.polling.arm_polling import ARMPolling

    _azureml_polling.AzureMLPolling.update_status = ARMPolling.update_status  # type: ignore[method-assign]


def workspace_facts(clients: Clients, workspace: str) -> dict[str, Any]:
    """The workspace's location, container registry login server and default storage account (ARM GET)."""
    ws = Client(clients.ml.workspaces, "workspaces").get(workspace)
    registry = (ws.container_registry or "").rsplit("/", 1)[-1]
    storage = (ws.storage_account or "").rsplit("/", 1)[-1]
    return {"workspace": ws.name, "location": ws.location,
            "container_registry": f"{registry}.azurecr.io" if registry else None,
            "storage_account": storage or None}
