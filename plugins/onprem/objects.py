"""Kinds whose readiness is more than "the API server accepted it": rollouts, volume binding, route acceptance,
namespace deletion."""

from __future__ import annotations

from typing import Any

from mlplat_plugins.onprem.base import SLOW, KubeObject
from provisioner.errors import MlplatError


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type `kind`, or None."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == kind), None)


class Namespace(KubeObject):
    """Deleting a namespace deletes everything in it; the delete waits until it is gone (Terminating → gone)."""

    timeouts = SLOW


class Deployment(KubeObject):
    """Ready when the rollout is complete: the controller saw this generation, and every replica is updated and
    available. A rollout past its progress deadline fails at once with the controller's message."""

    timeouts = SLOW
    #: a model server's Deployment is named by its model: a new one comes up beside the old (blue/green)
    replace_mode = "create_before_destroy"

    def status(self, obj: dict[str, Any]) -> tuple[bool, str]:
        meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
        progressing = condition(obj, "Progressing")
        if progressing and progressing.get("status") == "False" and \
                progressing.get("reason") == "ProgressDeadlineExceeded":
            raise MlplatError(f"Deployment {meta.get('namespace')}/{meta.get('name')} rollout failed: "
                              f"{progressing.get('message') or 'progress deadline exceeded'}",
                              hint="kubectl describe the Deployment's pods for the cause (image, scheduling, GPUs)")
        wanted = spec.get("replicas", 1)
        if status.get("observedGeneration", 0) < meta.get("generation", 1):
            return False, "waiting for the controller"
        updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
        if updated < wanted or available < wanted or status.get("replicas", 0) > wanted:
            return False, f"{available}/{wanted} available, {updated} updated"
        return True, "available"

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        status = obj.get("status") or {}
        return {**super().outputs(obj), "available_replicas": status.get("availableReplicas", 0)}


class PersistentVolume(KubeObject):
    timeouts = SLOW

    def status(self, obj: dict[str, Any]) -> tuple[bool, str]:
        phase = (obj.get("status") or {}).get("phase", "Pending")
        if phase == "Failed":
            raise MlplatError(f"PersistentVolume {obj['metadata']['name']} failed: "
                              f"{(obj.get('status') or {}).get('message', 'no reason given')}")
        return phase in ("Available", "Bound", "Released"), phase


class PersistentVolumeClaim(KubeObject):
    """Ready when bound to its volume (a claim that stays Pending names the volume it waits for)."""

    timeouts = SLOW

    def status(self, obj: dict[str, Any]) -> tuple[bool, str]:
        phase = (obj.get("status") or {}).get("phase", "Pending")
        if phase == "Lost":
            raise MlplatError(f"PersistentVolumeClaim {obj['metadata']['namespace']}/{obj['metadata']['name']} lost "
                              f"its volume {obj.get('spec', {}).get('volumeName')}")
        return phase == "Bound", f"{phase} (volume {obj.get('spec', {}).get('volumeName')})"

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {**super().outputs(obj), "phase": (obj.get("status") or {}).get("phase", "Pending")}


class HttpRoute(KubeObject):
    """Ready when its Gateway accepted it; a backend it cannot resolve fails with the Gateway's message."""

    def status(self, obj: dict[str, Any]) -> tuple[bool, str]:
        meta = obj.get("metadata", {})
        parents = (obj.get("status") or {}).get("parents") or []
        if not parents:
            return False, "waiting for the Gateway"
        for parent in parents:
            conditions = {c.get("type"): c for c in parent.get("conditions") or ()}
            for kind in ("Accepted", "ResolvedRefs"):
                found = conditions.get(kind)
                if found and found.get("status") == "False" and found.get("observedGeneration", 0) >= \
                        meta.get("generation", 1):
                    raise MlplatError(f"HTTPRoute {meta.get('namespace')}/{meta.get('name')} is not "
                                      f"{kind}: {found.get('reason')}: {found.get('message', '')}")
            accepted = conditions.get("Accepted")
            if not accepted or accepted.get("status") != "True" or \
                    accepted.get("observedGeneration", 0) < meta.get("generation", 1):
                return False, "waiting for the Gateway"
        return True, "accepted"
