"""Google Cloud clients for one gcp target, and Google's errors turned into mlplat's.

The only module of the plugin that imports the Google SDKs, and only when a provider first needs a client. Every
GAPIC client uses the REST transport (one HTTP stack, and what `endpoint_url` can point at a fake server), with
credentials from Application Default Credentials only (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth
application-default login`, the metadata server) — never from the stack file. The SDK's own retries are off
(`retry=None` on every GAPIC call): the engine retries what `translate` calls retryable (429 RESOURCE_EXHAUSTED,
503 UNAVAILABLE, connection errors), with its backoff and the target's concurrency cap.
"""

from __future__ import annotations

import functools
import inspect
import re
import threading
from typing import Any

from provisioner.cloud import CloudApiError, TranslatedClient, retryable
from provisioner.errors import MlplatError, RetryableError

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
#: google.rpc codes that mean "try again": throttled or briefly unavailable
TRANSIENT_CODES = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"})


class GcpApiError(CloudApiError):
    """A Google API call failed; `code` is the google.rpc status name (NOT_FOUND, FAILED_PRECONDITION...), the
    message Google's own. A 409 is "exists" only when its status is ALREADY_EXISTS (ABORTED is a 409 too)."""

    @property
    def already_exists(self) -> bool:
        return self.code in self.already_exists_codes


def translate(err: Exception, operation: str) -> Exception:
    """google-api-core / google-auth / requests exceptions → GcpApiError / RetryableError / a credentials hint."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(err, api.GoogleAPICallError):
        status = err.code if isinstance(err.code, int) else None
        grpc_code = getattr(err, "grpc_status_code", None)
        code = getattr(grpc_code, "name", None) or _status_of(err) or type(err).__name__
        response = getattr(err, "response", None)
        retry_after = response.headers.get("Retry-After") if response is not None else None
        # api_core puts "<METHOD> <request URL>: " before Google's message (and a tuple of its own after it)
        message = re.sub(r"^[A-Z]+ https?://\S+: ", "", err.message or str(err))
        message = re.sub(r": \('Request failed with status code'.*$", "", message)
        transient = retryable(status, retry_after, f"{operation}: {code}: {message}",
                              throttled=code in TRANSIENT_CODES)
        return transient or GcpApiError(operation, code, message, status)
    if isinstance(err, (requests.ConnectionError, requests.Timeout, auth.TransportError)):
        return RetryableError(f"{operation}: {err}")
    if isinstance(err, auth.DefaultCredentialsError):
        return MlplatError(f"{operation}: no Google Cloud credentials found",
                           hint="run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS "
                                "to a service account key file (mlplat never reads keys from the stack file)")
    if isinstance(err, auth.RefreshError):
        return MlplatError(f"{operation}: Google Cloud credentials were refused: {err}",
                           hint="refresh them: `gcloud auth application-default login`")
    return err


def _status_of(err: Any) -> str | None:
    """The google.rpc status name of a REST error body (`{"error": {"status": ...}}`), where grpc is absent."""
    try:
        return err.response.json()["error"]["status"]
    except Exception:  # no body, not JSON: the HTTP status decides
        return None


def _camel(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))


@functools.cache
def _takes_retry(cls: type, method: str) -> bool:
    try:
        return "retry" in inspect.signature(getattr(cls, method)).parameters
    except (TypeError, ValueError):
        return False


class Client(TranslatedClient):
    """A GAPIC client (or google-cloud-storage's) whose calls raise mlplat's errors, with the SDK's retries off.
    Errors name the RPC as Google's API reference does (`create_endpoint` → CreateEndpoint)."""

    def operation(self, method: str) -> str:
        return _camel(method)

    def __getattr__(self, name: str) -> Any:
        call = super().__getattr__(name)
        if not _takes_retry(type(self._raw), name):
            return call
        return functools.partial(call, retry=None)

    @property
    def raw(self) -> Any:
        return self._raw


#: attribute → (module, GAPIC client class); Vertex AI clients use the regional endpoint
_GAPIC = {
    "endpoints": ("google.cloud.aiplatform_v1", "EndpointServiceClient"),
    "models": ("google.cloud.aiplatform_v1", "ModelServiceClient"),
    "persistent_resources": ("google.cloud.aiplatform_v1", "PersistentResourceServiceClient"),
    "jobs": ("google.cloud.aiplatform_v1", "JobServiceClient"),
    "prediction": ("google.cloud.aiplatform_v1", "PredictionServiceClient"),
    "filestore": ("google.cloud.filestore_v1", "CloudFilestoreManagerClient"),
    "artifact_registry": ("google.cloud.artifactregistry_v1", "ArtifactRegistryClient"),
}


class Clients:
    """Lazily made, shared, thread-safe clients for one target (one project, one region, one endpoint):
    `endpoints`, `models`, `persistent_resources`, `jobs`, `prediction` (Vertex AI), `filestore`,
    `artifact_registry` and `storage` (google-cloud-storage's Client)."""

    def __init__(self, project: str, region: str, endpoint_url: str | None = None) -> None:
        self.project, self.region, self.endpoint_url = project, region, endpoint_url
        self._clients: dict[str, Client] = {}
        self._credentials: Any = None
        self._lock = threading.Lock()

    @property
    def credentials(self) -> Any:
        """Application Default Credentials, scoped for cloud-platform (made once; they refresh themselves)."""
        with self._lock:
            return self._adc()

    def _adc(self) -> Any:
        if self._credentials is None:
            import google.auth
            from google.auth import exceptions as auth

            try:
                self._credentials, _ = google.auth.default(scopes=list(SCOPES))
            except auth.DefaultCredentialsError as err:
                raise translate(err, "ApplicationDefaultCredentials") from None
        return self._credentials

    def __getattr__(self, name: str) -> Client:
        if name.startswith("_"):
            raise AttributeError(name)
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = Client(self._make(name), translate)
            return client

    def _make(self, name: str) -> Any:
        import importlib

        from google.api_core.client_options import ClientOptions

        credentials = self._adc()
        if name == "storage":
            from google.cloud import storage

            options = ClientOptions(api_endpoint=self.endpoint_url) if self.endpoint_url else None
            return storage.Client(project=self.project, credentials=credentials, client_options=options)
        if name not in _GAPIC:
            raise AttributeError(name)
        module, cls = _GAPIC[name]
        endpoint = self.endpoint_url
        if endpoint is None and module.endswith("aiplatform_v1"):
            endpoint = f"{self.region}-aiplatform.googleapis.com"
        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        return getattr(importlib.import_module(module), cls)(credentials=credentials, transport="rest",
                                                             client_options=options)


def operation_state(operation: Any) -> tuple[bool, str | None]:
    """(done, error message) of a google.longrunning Operation (as `get_operation` returns it)."""
    if not operation.done:
        return False, None
    if operation.HasField("error"):
        return True, operation.error.message or f"code {operation.error.code}"
    return True, None


def to_dict(message: Any) -> dict[str, Any]:
    """A proto-plus message as a dict with the API's field names (snake_case), enums by name."""
    return type(message).to_dict(message, preserving_proto_field_name=True, use_integers_for_enums=False)
