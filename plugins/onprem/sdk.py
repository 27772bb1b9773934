"""The official `kubernetes` client for one target, and its errors turned into mlplat's. The only module importing
the SDK (inside functions).

Objects are read and server-side applied through the dynamic client (`kubernetes.dynamic.DynamicClient`: any kind
the API server's discovery lists, CRDs included) with field manager `mlplat`; registry pushes go through the API
server's service proxy with the client's own credentials, so the cluster needs no other way in.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from provisioner.cloud import CloudApiError, retryable
from provisioner.errors import MlplatError, RetryableError

T = TypeVar("T")
FIELD_MANAGER = "mlplat"
_SDK_LOCK = threading.Lock()
_SDK_MODULES = ("kubernetes.client", "kubernetes.client.exceptions", "kubernetes.config",
                "kubernetes.config.config_exception", "kubernetes.dynamic", "kubernetes.dynamic.exceptions",
                "urllib3.exceptions")
_sdk_loaded = False


def load_sdk() -> None:
    """Import every SDK module this file uses, once, under a lock. The `kubernetes` package imports itself in
    circles: apply threads importing parts of it at once (a destroy's first steps, with no refresh before them)
    failed with "deadlock detected by _ModuleLock" or "cannot import name ... from partially initialized module"."""
    global _sdk_loaded
    if _sdk_loaded:
        return
    with _SDK_LOCK:
        if not _sdk_loaded:
            import importlib

            for name in _SDK_MODULES:
                importlib.import_module(name)
            _sdk_loaded = True


class KubeApiError(CloudApiError):
    """A Kubernetes API error; `code` is the Status `reason` (NotFound, AlreadyExists, Conflict, Invalid…)."""

    @property
    def already_exists(self) -> bool:
        # 409 is also `Conflict` (a stale resourceVersion, a server-side apply field conflict): not "exists"
        return self.code in self.already_exists_codes

    @property
    def conflict(self) -> bool:
        return self.status == 409 and self.code == "Conflict"


def translate(err: Exception, operation: str) -> Exception:
    """An SDK exception → KubeApiError / RetryableError / MlplatError (others pass through)."""
    load_sdk()
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError as Urllib3Error

    if isinstance(err, ApiException):
        reason, message = err.reason or "", str(err.body or "")
        try:
            status = json.loads(err.body or "{}")
            reason, message = status.get("reason") or reason, status.get("message") or message
        except (ValueError, AttributeError):
            pass
        headers = err.headers or {}
        return (retryable(err.status, headers.get("Retry-After"), f"{operation}: {reason}: {message}")
                or KubeApiError(operation, reason or str(err.status), message, err.status))
    if isinstance(err, Urllib3Error | ConnectionError | TimeoutError):
        return RetryableError(f"{operation}: cannot reach the Kubernetes API server: {err}")
    if isinstance(err, ConfigException):
        return MlplatError(f"{operation}: {err}", hint="check targets.onprem.kubeconfig and context (`kubectl config "
                                                       "get-contexts`)")
    return err


def _call(operation: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except Exception as err:
        raised = translate(err, operation)
        if raised is err:
            raise
        raise raised from err


class Kube:
    """One API client per target (made lazily under a lock; shared by every provider thread)."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        self.kubeconfig, self.context = kubeconfig, context
        self._lock = threading.Lock()
        self._api: Any = None
        self._dynamic: Any = None
        self._cache: tempfile.TemporaryDirectory[str] | None = None
        self._resources: dict[tuple[str, str], Any] = {}

    # clients ------------------------------------------------------------------------------------------------

    @property
    def api(self) -> Any:
        """The `kubernetes.client.ApiClient` of the kubeconfig (or the pod's service account)."""
        load_sdk()
        with self._lock:
            if self._api is None:
                self._api = self._load()
            return self._api

    def _load(self) -> Any:
        from kubernetes import client, config

        path = self.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or "~/.kube/config"
        path = os.path.expanduser(path)
        settings = client.Configuration()
        if not Path(path).is_file():
            if self.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=settings)
            else:
                raise MlplatError(f"no kubeconfig at {path}", hint="set targets.onprem.kubeconfig (or $KUBECONFIG) "
                                                                   "to the cluster's kubeconfig file")
        else:
            _call("load kubeconfig", lambda: config.load_kube_config(
                config_file=path, context=self.context, client_configuration=settings, persist_config=False))
        # no retries inside the client (urllib3 retries a 429 three times by default): the engine retries every
        # call, with its backoff, Retry-After and the target's concurrency cap
        settings.retries = False
        return client.ApiClient(configuration=settings)

    @property
    def dynamic(self) -> Any:
        api = self.api
        with self._lock:
            if self._dynamic is None:
                from kubernetes.dynamic import DynamicClient

                # discovery cached per client, not in a file shared by every process talking to this server;
                # the directory goes with the client (or at exit)
                self._cache = tempfile.TemporaryDirectory(prefix="mlplat-kube-")
                cache = os.path.join(self._cache.name, "discovery.json")
                self._dynamic = _call("discovery", lambda: DynamicClient(api, cache_file=cache))
            return self._dynamic

    def resource(self, api_version: str, kind: str) -> Any:
        """The dynamic client's resource for a kind; rediscovers once when it is not known (a CRD installed since)."""
        key = (api_version, kind)
        if key not in self._resources:
            load_sdk()
            from kubernetes.dynamic.exceptions import ResourceNotFoundError

            dynamic = self.dynamic
            try:
                found = dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                dynamic.resources.invalidate_cache()
                try:
                    found = dynamic.resources.get(api_version=api_version, kind=kind)
                except ResourceNotFoundError:
                    raise MlplatError(f"the cluster does not serve {kind} ({api_version})",
                                      hint="install the API (CRD) it belongs to, or preview again: the plan was "
                                           "made for a cluster that served it") from None
            self._resources[key] = found
        return self._resources[key]

    # calls --------------------------------------------------------------------------------------------------

    def server_version(self) -> str:
        load_sdk()
        from kubernetes import client

        return _call("get version", lambda: client.VersionApi(self.api).get_code().git_version)

    def api_groups(self) -> set[str]:
        load_sdk()
        from kubernetes import client

        groups = _call("list API groups", lambda: client.ApisApi(self.api).get_api_versions().groups)
        return {g.name for g in groups or ()}

    def gateway_url(self, name: str, namespace: str) -> str | None:
        """The base URL of a Gateway API Gateway: its first status address and its first HTTP listener's port
        (None while it has no address, or when there is no such Gateway)."""
        gateway = self.get("gateway.networking.k8s.io/v1", "Gateway", name, namespace)
        if gateway is None:
            raise MlplatError(f"there is no Gateway {namespace}/{name} in the cluster",
                              hint="set targets.onprem.gateway / gateway_namespace to your Gateway, or gateway_url")
        addresses = (gateway.get("status") or {}).get("addresses") or []
        if not addresses:
            return None
        listeners = gateway.get("spec", {}).get("listeners") or []
        listener = next((x for x in listeners if x.get("protocol") in ("HTTP", "HTTPS")), None)
        scheme = "https" if listener and listener.get("protocol") == "HTTPS" else "http"
        port = listener.get("port") if listener else None
        host = addresses[0]["value"]
        host = f"[{host}]" if ":" in host else host
        default = 443 if scheme == "https" else 80
        return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")

    def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The object as JSON, or None when it does not exist."""
        resource = self.resource(api_version, kind)
        try:
            found = _call(f"get {kind} {_path(name, namespace)}",
                          lambda: resource.get(name=name, namespace=namespace))
        except KubeApiError as err:
            if err.not_found:
                return None
            raise
        return found.to_dict()

    def apply(self, manifest: dict[str, Any], *, force: bool) -> dict[str, Any]:
        """Server-side apply `manifest` as field manager `mlplat` (creates it when absent)."""
        meta = manifest["metadata"]
        resource = self.resource(manifest["apiVersion"], manifest["kind"])
        return _call(f"apply {manifest['kind']} {_path(meta['name'], meta.get('namespace'))}",
                     lambda: self.dynamic.server_side_apply(resource, body=manifest, name=meta["name"],
                                                            namespace=meta.get("namespace"),
                                                            field_manager=FIELD_MANAGER,
                                                            force_conflicts=force)).to_dict()

    def merge_patch(self, api_version: str, kind: str, name: str, namespace: str | None,
                    patch: dict[str, Any]) -> dict[str, Any]:
        resource = self.resource(api_version, kind)
        return _call(f"patch {kind} {_path(name, namespace)}", lambda: self.dynamic.patch(
            resource, body=patch, name=name, namespace=namespace, content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER)).to_dict()

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        """Delete (background propagation); False when it was already gone."""
        resource = self.resource(api_version, kind)
        try:
            _call(f"delete {kind} {_path(name, namespace)}", lambda: resource.delete(
                name=name, namespace=namespace, body={"propagationPolicy": "Background"}))
        except KubeApiError as err:
            if err.not_found:
                return False
            raise
        return True

    def proxy(self, method: str, namespace: str, service: str, port: int, path: str, *, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request to a Service through the API server's proxy
        (`/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH`): (status, headers, body). Error statuses are
        returned, not raised, except those of the API server itself (401, 403, 429, 5xx from the proxy)."""
        load_sdk()
        from kubernetes.client.exceptions import ApiException

        target = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
        operation = f"{method} service {namespace}/{service} {path}"

        def call() -> tuple[int, dict[str, str], bytes]:
            try:
                response = self.api.call_api(
                    target, method, header_params={"Accept": "*/*", **(headers or {})}, body=body,
                    auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=False,
                    collection_formats={})
            except ApiException as err:
                if err.status in (401, 403, 429) or ((err.status or 0) >= 500 and _is_api_status(err.body)):
                    raise
                return err.status or 0, dict(err.headers or {}), err.body if isinstance(err.body, bytes) \
                    else str(err.body or "").encode()
            raw = response[0] if isinstance(response, tuple) else response  # the urllib3 response
            return raw.status, dict(raw.headers or {}), raw.data

        return _call(operation, call)


def _is_api_status(body: Any) -> bool:
    """Whether an error body is the API server's own Status (not the proxied service's answer)."""
    try:
        return json.loads(body or b"{}").get("kind") == "Status"
    except (ValueError, AttributeError):
        return False


def _path(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name
