"""A small, faithful fake Kubernetes API server on 127.0.0.1 (real HTTP, real JSON), for the onprem target.

Any real client works against it: the official `kubernetes` package (typed APIs, `DynamicClient`, `watch.Watch`)
through a kubeconfig `write_kubeconfig` writes (a bearer token; every request without it gets 401). It serves the
real paths (`/api/v1/...`, `/apis/{group}/{version}/...`), discovery (`/version`, `/api`, `/apis`, per group
version APIResourceLists with subresources), errors as `Status` objects with the real messages and reasons,
get/list (label and field selectors)/watch/create/update/patch (merge, strategic-as-merge, JSON patch)/
server-side apply/delete/deletecollection, and fills the metadata a real server does (uid, one global
resourceVersion, creationTimestamp, generation, managedFields in the FieldsV1 notation).

Modules: `registry` (the types; optional API groups `install`ed as CRDs), `fields` (paths, merges, patches),
`controllers` (what a cluster's controllers do: rollouts, PVC binding, namespace finalization, KServe and Gateway
status), `dataplane` (the Gateway's data plane, the service proxy, model-server and OCI-registry "pods").

Simplifications (what this fake cannot prove about a real cluster):
- Server-side apply tracks ownership per map key; lists (containers, env, ports, volumes, finalizers...) are
  atomic: owned as a whole by whoever sent them last, not merged by their keys as the real per-type schemas do.
  A conflict is a field another manager owns whose live value differs from the applied one. Strategic merge patch
  is treated as a JSON merge patch (lists replaced, not merged). No schema validation beyond a few real checks
  (names, Deployment selector vs template labels, apiVersion/kind/namespace matching the URL, PriorityClass value
  immutable); unknown fields are kept, not pruned; a missing `fieldManager` on apply is 422 Invalid, as the real
  server answers.
- No pods really run: a Deployment's pods are virtual (listed, not stored); "ready" is a count of GETs
  (`rollout_polls`); scheduling knows only `nvidia.com/gpu` against `gpus_available`. No garbage collection by
  ownerReferences, no admission webhooks, no RBAC (one token, all rights), no ResourceQuota enforcement.
- Deletion: `propagationPolicy` is accepted and ignored (there are no dependents); system finalizers
  (`kubernetes`, `kubernetes.io/pvc-protection`, `kubernetes.io/pv-protection`) are removed by the controllers
  after `controller_ticks` ticks; any other finalizer must be removed by a client.
- Watches filter by the object's current labels (no synthetic DELETED when an object stops matching); no
  bookmarks; history since the last `reset()` (an older resourceVersion gets a 410 Expired ERROR event).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from loopback_server import METHODS, LoopbackServer, serve

from kube_fake import fields
from kube_fake.registry import BUILTIN, OPTIONAL, Catalog, ResourceType, crd_objects, discovery_version, types_from_crd

GIT_VERSION = "v1.31.0"
GATEWAY_NAMESPACE = "gateway-system"
GATEWAY_NAME = "mlplat-gateway"
GATEWAY_CLASS = "mlplat-fake"
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
#: the managers the fake's own writes use
CONTROLLER_MANAGER = "kube-controller-manager"
INSTALL_MANAGER = "mlplat-fake-install"

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


class KubeError(Exception):
    """Answered as a `Status` object, as the real API server does."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": self.message, "reason": self.reason}
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _details(rt: ResourceType | None, name: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if rt is not None:
        if rt.group:
            out["group"] = rt.group
        out["kind"] = rt.plural
    return out


def not_found(rt: ResourceType, name: str) -> KubeError:
    return KubeError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> KubeError:
    return KubeError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str) -> KubeError:
    return KubeError(409, "Conflict", f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has '
                                      "been modified; please apply your changes to the latest version and try again",
                     _details(rt, name))


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> KubeError:
    """422 Invalid; causes are (field, reason-word, message) such as ("metadata.name", "Required value", "...")."""
    parts = [f"{fld}: {word}: {msg}" for fld, word, msg in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = {**_details(rt, name), "kind": rt.kind,
               "causes": [{"reason": "Field" + word.replace(" value", "ValueRequired" if word.startswith("Required")
                                                                  else "ValueInvalid").replace(" ", ""),
                           "message": f"{word}: {msg}", "field": fld} for fld, word, msg in causes]}
    return KubeError(422, "Invalid", f'{rt.group_kind} "{name}" is invalid: {joined}', details)


def bad_request(message: str) -> KubeError:
    return KubeError(400, "BadRequest", message)


def _route_not_found() -> KubeError:
    return KubeError(404, "NotFound", "the server could not find the requested resource", {})


@dataclass
class Request:
    method: str
    path: str
    raw_query: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true", "yes")

    def document(self) -> Any:
        if not self.body:
            return {}
        ctype = self.headers.get("content-type", "")
        try:
            return json.loads(self.body)
        except ValueError:
            if "yaml" not in ctype:
                raise bad_request("error decoding request body: invalid character in JSON") from None
        try:
            return yaml.safe_load(self.body) or {}
        except yaml.YAMLError as err:
            raise bad_request(f"error decoding YAML: {err}") from None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # a JSON document, or bytes
    headers: dict[str, str] = field(default_factory=dict)
    stream: Callable[[Callable[[bytes], bool]], None] | None = None  # a watch: writes lines until done


@dataclass
class Owner:
    """One managedFields entry: the paths a (manager, operation, subresource) owns."""

    api_version: str
    time: str
    paths: set[fields.Path] = field(default_factory=set)


@dataclass
class Event:
    rv: int
    key: tuple[str, str]  # (group, plural)
    type: str
    obj: dict[str, Any]


class KubeFake:
    """The API server. Objects live in `self.store[(group, plural)][(namespace, name)]` as the JSON the real
    server returns (namespace "" for cluster-scoped); `self.owners` holds their managed fields."""

    def __init__(self, rollout_polls: int = 1, gpus_available: int = 1_000_000, controller_ticks: int = 1) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.token = secrets.token_hex(16)
        self.server: LoopbackServer | None = None
        self.catalog = Catalog()
        self.store: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        self.owners: dict[tuple[str, str, str, str], dict[tuple[str, str, str], Owner]] = {}
        self.history: list[Event] = []
        self.history_start = 0
        self._rv = itertools.count(1)
        self.rv = 0
        self.calls: list[tuple[str, str, str, str]] = []  # (verb, plural, namespace, name)
        self._throttle: list[Any] | None = None  # [times left, actions or None, per-request counts or None]
        self.throttled = 0
        self.installed: set[str] = set()
        self.defaults = {"rollout_polls": rollout_polls, "gpus_available": gpus_available,
                         "controller_ticks": controller_ticks}
        self.rollout_polls = rollout_polls
        self.gpus_available = gpus_available
        self.controller_ticks = controller_ticks
        self._stopping = threading.Event()
        from kube_fake.controllers import Controllers
        from kube_fake.dataplane import DataPlane

        self.controllers = Controllers(self)
        self.dataplane = DataPlane(self)
        self._refresh_catalog()

    # --- lifecycle ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def gateway_url(self) -> str:
        """The data plane (the Gateway's listener `http`)."""
        return self.dataplane.url

    @property
    def served(self) -> Counter[tuple[str, str]]:
        """Requests answered per backend: (namespace, Service) or (namespace, InferenceService revision)."""
        return self.dataplane.served

    @property
    def mirrored(self) -> Counter[tuple[str, str]]:
        return self.dataplane.mirrored

    def start(self) -> KubeFake:
        self.dataplane.start()
        self.server = serve(self._dispatch, "kube-fake", (*METHODS, "HEAD", "OPTIONS"))
        threading.Thread(target=self._ticker, daemon=True, name="kube-fake-controllers").start()
        self.reset()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self.changed:
            self.changed.notify_all()
        if self.server is not None:
            self.server.stop()
        self.dataplane.stop()

    def _ticker(self) -> None:
        while not self._stopping.wait(0.05):
            with contextlib.suppress(Exception):  # a controller bug must not stop the loop; requests show it
                self.tick()

    def tick(self) -> None:
        """Run the controllers once (every request does, and a background thread every 50 ms)."""
        with self.lock:
            self.controllers.tick()

    def reset(self) -> None:
        """Drop every object but the built-in namespaces and the Gateway (the gateway group installed only),
        the call log, throttling, the knobs and the data plane's counters."""
        with self.changed:
            self.store.clear()
            self.owners.clear()
            self.history.clear()
            self.history_start = self.rv
            self.calls.clear()
            self._throttle = None
            self.throttled = 0
            self.installed.clear()
            self.rollout_polls = self.defaults["rollout_polls"]
            self.gpus_available = self.defaults["gpus_available"]
            self.controller_ticks = self.defaults["controller_ticks"]
            self.controllers.reset()
            self.dataplane.reset()
            self._refresh_catalog()
            for ns in BUILTIN_NAMESPACES:
                self.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            self.install("gateway")
            self.changed.notify_all()

    def write_kubeconfig(self, path: str | Path, context: str = "fake") -> Path:
        """A kubeconfig for this server: cluster, user (bearer token), context (the current one)."""
        path = Path(path)
        config = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": context,
                  "clusters": [{"name": context, "cluster": {"server": self.url}}],
                  "users": [{"name": f"{context}-admin", "user": {"token": self.token}}],
                  "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-admin",
                                                             "namespace": "default"}}]}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # --- optional API groups ---------------------------------------------------------------------------------

    def install(self, *names: str) -> None:
        """Create the CRDs of optional API groups ("gateway", "kueue", "prometheus", "kserve"): their group
        appears in discovery and their objects are served. Installing "gateway" also creates the GatewayClass
        `mlplat-fake` and the Gateway `mlplat-gateway` (namespace `gateway-system`) whose listener is the data
        plane."""
        with self.lock:
            for name in names:
                for crd in crd_objects(name):
                    if self.find_object("apiextensions.k8s.io", "customresourcedefinitions", "",
                                        crd["metadata"]["name"]) is None:
                        self.put_object(crd, manager=INSTALL_MANAGER)
                self.installed.add(name)
                if name == "gateway":
                    self.controllers.ensure_gateway()

    def uninstall(self, *names: str) -> None:
        """Delete the CRDs of optional groups (and so every object of theirs)."""
        with self.lock:
            for name in names:
                for crd in crd_objects(name):
                    self.remove_object(self.catalog.find("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
                                       "", crd["metadata"]["name"])
                self.installed.discard(name)

    def _refresh_catalog(self) -> None:
        catalog = Catalog()
        for rt in BUILTIN:
            catalog.add(rt)
        for crd in self.store.get(("apiextensions.k8s.io", "customresourcedefinitions"), {}).values():
            if crd["metadata"].get("deletionTimestamp"):
                continue
            for rt in types_from_crd(crd):
                catalog.add(rt)
        self.catalog = catalog

    # --- knobs ------------------------------------------------------------------------------------------------

    def hold_rollouts(self, *names: str) -> None:
        """Deployments (by name, any namespace) whose new pods never become ready until `release_rollouts`."""
        self.controllers.held.update(names)

    def release_rollouts(self, *names: str) -> None:
        self.controllers.held.difference_update(names or set(self.controllers.held))

    def fail_rollout(self, name: str, message: str = "") -> None:
        """The Deployment's current rollout fails: Progressing=False, reason ProgressDeadlineExceeded."""
        self.controllers.failed[name] = message

    def kill(self, namespace: str, deployment: str) -> None:
        """The Deployment's pods answer 503 until its next rollout."""
        self.controllers.killed.add((namespace, deployment))

    def registry_blobs(self, namespace: str, claim_or_deployment: str) -> dict[str, bytes]:
        """The blobs an OCI-registry Deployment stored, keyed by its PVC's name (or the Deployment's)."""
        return self.dataplane.registry_blobs(namespace, claim_or_deployment)

    # --- the store (also the harness's console) -----------------------------------------------------------------

    def now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def next_rv(self) -> str:
        self.rv = next(self._rv)
        return str(self.rv)

    def find_object(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get((group, plural), {}).get((namespace, name))

    def objects(self, group: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every stored object of a type (in one namespace, or all), by name."""
        items = self.store.get((group, plural), {})
        return [o for (ns, _), o in sorted(items.items()) if namespace is None or ns == namespace]

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        """A copy of one object, or None."""
        with self.lock:
            rt = self._type_of(api_version, kind)
            obj = self.find_object(rt.group, rt.plural, namespace if rt.namespaced else "", name)
            return copy.deepcopy(obj) if obj is not None else None

    def put_object(self, obj: dict[str, Any], manager: str = INSTALL_MANAGER) -> dict[str, Any]:
        """Create or replace an object out of band (as `manager`, operation Update)."""
        with self.changed:
            rt = self._type_of(obj.get("apiVersion", ""), obj.get("kind", ""))
            meta = obj.setdefault("metadata", {})
            ns = meta.get("namespace", "default") if rt.namespaced else ""
            old = self.find_object(rt.group, rt.plural, ns, meta["name"])
            return self._write(rt, ns, meta["name"], copy.deepcopy(obj), old, manager, "Update")

    def edit(self, api_version: str, kind: str, name: str, namespace: str, change: Callable[[dict[str, Any]], None],
             manager: str = "kubectl-edit") -> dict[str, Any]:
        """Change an object out of band, as `manager` would with an update (e.g. someone scaling a Deployment)."""
        with self.changed:
            rt = self._type_of(api_version, kind)
            ns = namespace if rt.namespaced else ""
            old = self.find_object(rt.group, rt.plural, ns, name)
            if old is None:
                raise not_found(rt, name)
            new = copy.deepcopy(old)
            change(new)
            return self._write(rt, ns, name, new, old, manager, "Update")

    def _type_of(self, api_version: str, kind: str) -> ResourceType:
        rt = self.catalog.by_kind(api_version, kind)
        if rt is None:
            raise KubeError(404, "NotFound", f"no matches for kind \"{kind}\" in version \"{api_version}\"", {})
        return rt

    def remove_object(self, rt: ResourceType | None, namespace: str, name: str) -> None:
        """Make an object vanish now (a DELETED event), with what depends on it (a namespace's content, a CRD's
        objects)."""
        if rt is None:
            return
        with self.changed:
            obj = self.store.get((rt.group, rt.plural), {}).pop((namespace, name), None)
            if obj is None:
                return
            self.owners.pop((rt.group, rt.plural, namespace, name), None)
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = self.next_rv()
            self._emit("DELETED", rt, gone)
            self.controllers.removed(rt, gone)
            if rt.plural == "customresourcedefinitions":
                spec = obj.get("spec") or {}
                key = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
                crt = next((t for t in self.catalog.types.values() if (t.group, t.plural) == key), None)
                for ns, n in list(self.store.get(key, {})):
                    self.remove_object(crt, ns, n)
                self._refresh_catalog()
            self.changed.notify_all()

    def _mark_deleting(self, rt: ResourceType, ns: str, name: str, new: dict[str, Any]) -> None:
        """Store an object as being deleted (deletionTimestamp set; its finalizers still pending)."""
        with self.changed:
            new["metadata"]["resourceVersion"] = self.next_rv()
            self.store.setdefault((rt.group, rt.plural), {})[(ns, name)] = new
            self._emit("MODIFIED", rt, new)
            if rt.plural == "customresourcedefinitions":
                self._refresh_catalog()
            self.changed.notify_all()

    def _emit(self, kind: str, rt: ResourceType, obj: dict[str, Any]) -> None:
        self.history.append(Event(int(obj["metadata"]["resourceVersion"]), (rt.group, rt.plural), kind,
                                  copy.deepcopy(obj)))

    # --- writes: defaulting, validation, ownership, events -----------------------------------------------------

    def _write(self, rt: ResourceType, ns: str, name: str, new: dict[str, Any], old: dict[str, Any] | None,
               manager: str, operation: str, subresource: str = "", owners_after: dict[Any, Owner] | None = None,
               ) -> dict[str, Any]:
        """Store `new` (a create when `old` is None): server-set metadata, defaults, managed fields (diffed as an
        Update unless `owners_after` is given, as apply does), generation, a watch event."""
        meta = new.setdefault("metadata", {})
        meta.pop("managedFields", None)
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = self.now()
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                meta.pop(k, None)
        else:
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
                else:
                    meta.pop(k, None)
            if rt.has_status and subresource != "status" and "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            elif rt.has_status and subresource != "status":
                new.pop("status", None)
            if subresource == "status":  # only the status changes through the status subresource
                new = {**copy.deepcopy(old), "status": new.get("status")}
                if new["status"] is None:
                    new.pop("status")
                meta = new["metadata"]
        self._default(rt, new, old)
        self._validate(rt, new, old)
        key = (rt.group, rt.plural, ns, name)
        if owners_after is None:
            owners_after = self._owners_after_update(key, old or {}, new, manager, operation, subresource,
                                                     rt.api_version)
        if old is not None:
            strip = ("metadata", "status")
            if rt.generation and {k: v for k, v in new.items() if k not in strip} != \
                    {k: v for k, v in old.items() if k not in strip}:
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            elif rt.generation:
                meta["generation"] = old["metadata"].get("generation", 1)
            comparable_old = {**old, "metadata": {**old["metadata"], "managedFields": None, "resourceVersion": None}}
            comparable_new = {**new, "metadata": {**meta, "managedFields": None, "resourceVersion": None}}
            if comparable_old == comparable_new and owners_after == self.owners.get(key, {}):
                return copy.deepcopy(old)  # a no-op write: the real server keeps the resourceVersion
        elif rt.generation:
            meta["generation"] = 1
        self.owners[key] = owners_after
        meta["managedFields"] = self._render_owners(owners_after)
        if not meta["managedFields"]:
            meta.pop("managedFields")
        meta["resourceVersion"] = self.next_rv()
        # a deleting object whose finalizers are all gone vanishes
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not (
                rt.plural == "namespaces" and (new.get("spec") or {}).get("finalizers")):
            self.store.setdefault((rt.group, rt.plural), {})[(ns, name)] = new
            self.remove_object(rt, ns, name)
            return copy.deepcopy(new)
        self.store.setdefault((rt.group, rt.plural), {})[(ns, name)] = new
        self._emit("ADDED" if old is None else "MODIFIED", rt, new)
        if rt.plural == "customresourcedefinitions":
            self._refresh_catalog()
        self.controllers.written(rt, new, old)
        self.changed.notify_all()
        return copy.deepcopy(new)

    def _owners_after_update(self, key: Any, old: dict[str, Any], new: dict[str, Any], manager: str,
                             operation: str, subresource: str, api_version: str) -> dict[tuple[str, str, str], Owner]:
        before, after = fields.leaves(old), fields.leaves(new)
        changed = {p for p, v in after.items() if before.get(p, _ABSENT) != v}
        removed = set(before) - set(after)
        touched = changed | removed
        owners = {k: Owner(o.api_version, o.time, set(o.paths)) for k, o in self.owners.get(key, {}).items()}
        for o in owners.values():
            o.paths = {p for p in o.paths if p in after and not any(fields.overlaps(p, t) for t in touched)}
        if changed:
            mine = owners.setdefault((manager, operation, subresource), Owner(api_version, self.now()))
            mine.paths |= changed
            mine.time, mine.api_version = self.now(), api_version
        return {k: o for k, o in owners.items() if o.paths}

    @staticmethod
    def _render_owners(owners: dict[tuple[str, str, str], Owner]) -> list[dict[str, Any]]:
        out = []
        for (manager, operation, subresource), o in owners.items():
            entry: dict[str, Any] = {"manager": manager, "operation": operation, "apiVersion": o.api_version,
                                     "time": o.time, "fieldsType": "FieldsV1", "fieldsV1": fields.fields_v1(o.paths)}
            if subresource:
                entry["subresource"] = subresource
            out.append(entry)
        return out

    def _default(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """The defaults the real API server's registries set (the ones tests may see)."""
        from kube_fake.controllers import apply_defaults

        apply_defaults(self, rt, obj, old)

    def _validate(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        name = obj["metadata"]["name"]
        if rt.plural in ("namespaces",):
            ok, what, rx = bool(_DNS1123_LABEL.match(name)), "RFC 1123 label", "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
            msg = (f"a lowercase {what} must consist of lower case alphanumeric characters or '-', and must start "
                   f"and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                   f"validation is '{rx}')")
        elif rt.plural == "services":
            ok = bool(_DNS1035_LABEL.match(name))
            msg = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                   "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                   "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
        else:
            ok = bool(_DNS1123_SUBDOMAIN.match(name)) and len(name) <= 253
            msg = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                   "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
        if not ok:
            raise invalid(rt, name, [("metadata.name", "Invalid value", f'"{name}": {msg}')])
        if rt.plural == "deployments":
            spec = obj.get("spec") or {}
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not selector and not (spec.get("selector") or {}).get("matchExpressions"):
                raise invalid(rt, name, [("spec.selector", "Required value", "")])
            if any(labels.get(k) != v for k, v in selector.items()):
                shown = "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"
                raise invalid(rt, name, [("spec.template.metadata.labels", "Invalid value",
                                          f"{shown}: `selector` does not match template `labels`")])
            if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
                raise invalid(rt, name, [("spec.selector", "Invalid value",
                                          f"v1.LabelSelector{{MatchLabels:{selector}}}: field is immutable")])
        if rt.plural == "priorityclasses":
            if "value" not in obj:
                raise invalid(rt, name, [("value", "Required value", "")])
            if old is not None and old.get("value") != obj.get("value"):
                raise invalid(rt, name, [("value", "Forbidden", "may not be changed in an update.")])

    # --- throttling and the call log ---------------------------------------------------------------------------

    @contextmanager
    def throttle(self, times: int, actions: str | set[str] | frozenset[str] | list[str] | None = None,
                 per_request: bool = False) -> Iterator[None]:
        """Answer the next `times` matching requests 429 TooManyRequests (Retry-After: 1); with `per_request`,
        the first `times` of each distinct request (verb, object, proxied path) instead. `actions` are
        "<verb> <plural>" ("get deployments", "apply httproutes", "delete namespaces"), a verb alone ("list"), a
        plural alone, or None (every request). Verbs: get list watch create update patch apply delete
        deletecollection proxy (or proxy-read: GET/HEAD, proxy-write) discovery."""
        with self.lock:
            wanted = None if actions is None else frozenset([actions] if isinstance(actions, str) else actions)
            self._throttle = [times, wanted, Counter() if per_request else None]
            self.throttled = 0
        try:
            yield
        finally:
            with self.lock:
                self._throttle = None

    def _should_throttle(self, verb: str, plural: str, key: tuple[str, ...] = ()) -> bool:
        if self._throttle is None:
            return False
        times, wanted, seen = self._throttle
        general = verb.split("-")[0]  # "proxy-read" / "proxy-write" also match "proxy"
        if wanted is not None and not ({f"{verb} {plural}", verb, general, f"{general} {plural}", plural} & wanted):
            return False
        if seen is not None:  # per distinct request
            seen[(verb, plural, *key)] += 1
            if seen[(verb, plural, *key)] > times:
                return False
        elif times <= 0:
            return False
        else:
            self._throttle[0] -= 1
        self.throttled += 1
        return True

    def count(self, verb: str, plural: str | None = None) -> int:
        """How many requests of a verb (on a plural) the server answered (or refused) since `reset`."""
        return sum(1 for v, p, _, _ in self.calls if v == verb and (plural is None or p == plural))

    # --- dispatch ------------------------------------------------------------------------------------------------

    def _dispatch(self, http: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(http.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(http.headers.get("Content-Length") or 0)
        body = http.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in http.headers.items()}
        request = Request(http.command, path, parts.query, query, headers, body)
        try:
            if headers.get("authorization", "") != f"Bearer {self.token}":
                raise KubeError(401, "Unauthorized", "Unauthorized")
            self.tick()
            from kube_fake.api import handle

            response = handle(self, request)
        except KubeError as err:
            response = Response(err.code, err.body(), err.headers)
        except Exception as err:  # a bug in the fake: say so as a Status, not as a dropped connection
            import traceback

            traceback.print_exc()
            response = Response(500, KubeError(500, "InternalError",
                                               f"fake server error: {type(err).__name__}: {err}").body())
        write(http, response)


_ABSENT = object()


def write(http: BaseHTTPRequestHandler, response: Response) -> None:
    """Write a response; a watch streams chunked, one JSON event a line."""
    if response.stream is not None:
        http.send_response(response.status)
        http.send_header("Content-Type", "application/json")
        http.send_header("Transfer-Encoding", "chunked")
        http.end_headers()

        def send(data: bytes) -> bool:
            try:
                http.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                http.wfile.flush()
                return True
            except OSError:
                return False

        response.stream(send)
        try:
            http.wfile.write(b"0\r\n\r\n")
            http.wfile.flush()
        except OSError:
            pass
        http.close_connection = True
        return
    if isinstance(response.body, bytes):
        data, ctype = response.body, response.headers.get("Content-Type", "application/octet-stream")
    elif response.body is None:
        data, ctype = b"", response.headers.get("Content-Type", "text/plain; charset=utf-8")
    else:
        data, ctype = json.dumps(response.body).encode(), "application/json"
    http.send_response(response.status)
    http.send_header("Content-Type", ctype)
    if "Content-Length" not in response.headers:
        http.send_header("Content-Length", str(len(data)))
    for key, value in response.headers.items():
        if key.lower() != "content-type":
            http.send_header(key, value)
    http.end_headers()
    if http.command != "HEAD":
        http.wfile.write(data)


def started_server(install: tuple[str, ...] | list[str] = (), **knobs: Any) -> KubeFake:
    """A started fake (gateway installed, plus `install`); knobs: rollout_polls, gpus_available,
    controller_ticks."""
    fake = KubeFake(**knobs).start()
    if install:
        fake.install(*install)
    return fake


__all__ = ["GATEWAY_CLASS", "GATEWAY_NAME", "GATEWAY_NAMESPACE", "OPTIONAL", "KubeError", "KubeFake",
           "discovery_version", "started_server"]
