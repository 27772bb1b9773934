"""What every onprem provider shares: one generic provider of a Kubernetes object, server-side applied.

An object's inputs are its whole manifest (`manifest`), its identity (`api_version`, `kind`, `name`, `namespace`)
and `replace_on`: values the object cannot change in place (an NFS volume's source). Identity and `replace_on` are
`force_new`; everything else is one more server-side apply of the manifest, which sets what mlplat declares and
removes what it declared before and no longer does, leaving other field managers' fields alone.

Identity: Kubernetes keys objects by name, so names derive from the stack and component names, the create's token
(`ctx.token`) is an annotation (`find` after a crash knows its own object), and the mlplat address another. A field
another manager owns (a `kubectl scale`) makes apply fail with a conflict naming it, unless `force_conflicts`.

Drift: `read` projects the live object onto the declared manifest's keys, so what the API server or controllers
add (defaults, status, managedFields) is never drift, and a declared value changed out of band is.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from provisioner.cloud import find_own, operation_id, operation_of
from provisioner.errors import MlplatError
from provisioner.provider import Created, Observed, ResourceProvider

if TYPE_CHECKING:
    from mlplat_plugins.onprem.sdk import Kube
    from mlplat_plugins.onprem.target import OnpremTarget
    from provisioner.operations import StepContext

TOKEN_ANNOTATION = "mlplat.dev/token"
ADDRESS_ANNOTATION = "mlplat.dev/address"
FAST = {"create": 300.0, "update": 300.0, "delete": 300.0}
#: rollouts pull images and start pods; deletions of namespaces wait for everything in them
SLOW = {"create": 1800.0, "update": 1800.0, "delete": 1800.0}


def object_id(kind: str, name: str, namespace: str | None) -> str:
    """A provider id, as kubectl names objects: `Kind/namespace/name`, or `Kind/name` when cluster-scoped (a
    Deployment and its Service share a name)."""
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _id_of(inputs: dict[str, Any]) -> str:
    return object_id(inputs["kind"], inputs["name"], inputs.get("namespace"))


def project(live: Any, declared: Any) -> Any:
    """`live` restricted to the keys `declared` has (recursively; lists element by element when their lengths
    agree): the live value of every declared field, nothing the server or other managers added."""
    if isinstance(declared, dict) and isinstance(live, dict):
        return {k: project(live[k], v) for k, v in declared.items() if k in live}
    if isinstance(declared, list) and isinstance(live, list) and len(declared) == len(live):
        return [project(lv, dv) for lv, dv in zip(live, declared, strict=True)]
    return live


class KubeObject(ResourceProvider):
    """A Kubernetes object of any kind the cluster serves. Subclasses say when it is ready (`status`) and what it
    exports (`outputs`)."""

    force_new = ("api_version", "kind", "name", "namespace", "replace_on")
    replace_mode = "destroy_before_create"  # the name is the key: the old object goes first
    timeouts = FAST

    def __init__(self, target: OnpremTarget) -> None:
        self.target = target
        self.settings = target.s

    @property
    def kube(self) -> Kube:
        return self.target.kube()

    @property
    def intervals(self) -> dict[str, float]:
        interval = self.settings.poll_interval_s
        return {"interval": interval, "max_interval": max(interval, 15.0)}

    # what subclasses refine --------------------------------------------------------------------------------

    def status(self, obj: dict[str, Any]) -> tuple[bool, str]:
        """(ready, what it is doing or why it failed); raise MlplatError for a state that cannot become ready."""
        return True, "ready"

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata", {})
        return {"name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid")}

    def manifest(self, address: str, inputs: dict[str, Any], token: str) -> dict[str, Any]:
        """The object to apply: the declared manifest with mlplat's annotations."""
        body = copy.deepcopy(inputs["manifest"])
        annotations = body["metadata"].setdefault("annotations", {})
        annotations[ADDRESS_ANNOTATION] = address
        annotations[TOKEN_ANNOTATION] = token
        return body

    # the protocol ------------------------------------------------------------------------------------------

    def _get(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        return self.kube.get(inputs["api_version"], inputs["kind"], inputs["name"], inputs.get("namespace"))

    def _what(self, inputs: dict[str, Any]) -> str:
        namespace = inputs.get("namespace")
        return f"{inputs['kind']} {namespace}/{inputs['name']}" if namespace else f"{inputs['kind']} {inputs['name']}"

    def _wait_ready(self, ctx: StepContext, inputs: dict[str, Any], phase: str) -> dict[str, Any]:
        def check() -> tuple[bool, Any]:
            seen = self._get(inputs)
            if seen is None:
                raise MlplatError(f"{self._what(inputs)} disappeared while {phase.lower()}")
            ready, doing = self.status(seen)
            return (True, seen) if ready else (False, doing)

        return ctx.wait(check, what=f"{self._what(inputs)} {phase}", **self.intervals)

    def _apply(self, address: str, inputs: dict[str, Any], token: str) -> dict[str, Any]:
        from mlplat_plugins.onprem.sdk import KubeApiError

        try:
            return self.kube.apply(self.manifest(address, inputs, token), force=self.settings.force_conflicts)
        except KubeApiError as err:
            if not err.conflict:
                raise
            target = self.target.context.target_name
            raise MlplatError(str(err), hint=f"another field manager owns what mlplat declares: undo its change, "
                                             f"or set targets.{target}.force_conflicts: true to take the fields "
                                             "back") from None

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        id = _id_of(inputs)
        if operation_of(ctx, "Apply") is None:
            existing = self._get(inputs)
            if existing is not None and _token(existing) != ctx.token:
                raise MlplatError(f"{self._what(inputs)} already exists and was not made by this apply "
                                  f"({_made_by(existing)})", hint=f"delete it, or adopt it: mlplat import {address} "
                                                                  f"{id}")
            self._apply(address, inputs, ctx.token)
            ctx.checkpoint(operation_id("Apply", id))
        return Created(id, self.outputs(self._wait_ready(ctx, inputs, "Creating")))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        seen = self._get(inputs) if _id_of(inputs) == id else self._get(dict(inputs, **_split(id)))
        if seen is None or seen.get("metadata", {}).get("deletionTimestamp"):
            return None
        observed = dict(inputs, manifest=project(_without_ours(seen), inputs["manifest"]))
        return Observed(observed, self.outputs(seen))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if operation_of(ctx, "Apply") is None:
            live = self._get(desired)  # keep the token of the create that made it (`find` after a crash)
            self._apply(ctx.address, desired, (_token(live) if live else None) or ctx.token)
            ctx.checkpoint(operation_id("Apply", id))
        return self.outputs(self._wait_ready(ctx, desired, "Updating"))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        # the object `id` names: a deposed predecessor's inputs may be its successor's (only its id is recorded)
        inputs = dict(inputs, **_split(id))
        if operation_of(ctx, "Delete") is None:
            if not self.kube.delete(inputs["api_version"], inputs["kind"], inputs["name"], inputs.get("namespace")):
                return
            ctx.checkpoint(operation_id("Delete", id))
        ctx.wait(lambda: (self._get(inputs) is None, "Deleting"), what=f"{self._what(inputs)} deleted",
                 **self.intervals)

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        id = _id_of(inputs)
        seen = find_own(id, ctx, lambda: self._get(inputs), _token)
        if seen is None:
            return None
        return Created(id, self.outputs(self._wait_ready(ctx, inputs, "Creating")))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """`mlplat import ADDRESS Kind/NAMESPACE/NAME` (`Kind/NAME` for a cluster-scoped object)."""
        if id != _id_of(inputs):
            return None
        return self.read(id, inputs)


def _split(id: str) -> dict[str, Any]:
    kind, _, rest = id.partition("/")
    namespace, _, name = rest.rpartition("/")
    return {"kind": kind, "name": name, "namespace": namespace or None}


def _annotation(obj: dict[str, Any] | None, key: str) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("annotations", {}).get(key) if obj else None


def _token(obj: dict[str, Any]) -> str | None:
    return _annotation(obj, TOKEN_ANNOTATION)


def _made_by(obj: dict[str, Any]) -> str:
    address = _annotation(obj, ADDRESS_ANNOTATION)
    return f"mlplat made it for {address} in another apply" if address else "not by mlplat"


def _without_ours(obj: dict[str, Any]) -> dict[str, Any]:
    """The live object without mlplat's bookkeeping annotations (never declared, never drift)."""
    annotations = (obj.get("metadata") or {}).get("annotations")
    if not annotations:
        return obj
    obj = copy.deepcopy(obj)
    for key in (TOKEN_ANNOTATION, ADDRESS_ANNOTATION):
        obj["metadata"]["annotations"].pop(key, None)
    if not obj["metadata"]["annotations"]:
        del obj["metadata"]["annotations"]
    return obj
