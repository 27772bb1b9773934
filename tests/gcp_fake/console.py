"""The harness's console on the fake Google Cloud: every object counted by the mlplat address it carries, and
objects deleted behind mlplat's back — straight on the fake's state, never through the plugin.

Where an object keeps its address: a description or display name `mlplat:<address>` (Filestore instances,
repositories, model versions, endpoints, deployed models), GCS custom metadata `mlplat-address`, a persistent
resource's `mlplat-address` label (the address in label form, mapped back through its display name); a traffic
split is the endpoint's non-empty `trafficSplit`, a monitoring job belongs to the endpoint it watches."""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from gcp_fake import filestore

if TYPE_CHECKING:
    from gcp_fake import GcpFake

PREFIX = "mlplat:"


def _address(text: str | None) -> str | None:
    return text[len(PREFIX):] if text and text.startswith(PREFIX) else None


def _label(address: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", address.lower())[:63]


def console_objects(fake: GcpFake) -> Counter[str]:
    found: Counter[str] = Counter()
    objects = fake.objects
    found.update(filestore.by_address(fake))
    for name, resource in objects["persistentResources"].items():
        label = (resource.get("labels") or {}).get("mlplat-address")
        guess = f"{resource.get('displayName')}.persistent_resource.main"
        found[guess if label and label == _label(guess) else (label or name)] += 1
    for name, repo in objects["repositories"].items():
        found[_address(repo.get("description")) or name] += 1
    for name, version in objects["model_versions"].items():
        found[_address(version.get("description")) or name] += 1
    for name, blob in objects["gcs_objects"].items():
        found[(blob.get("metadata") or {}).get("mlplat-address") or f"gs://{name}"] += 1
    endpoints: dict[str, str] = {}
    for name, endpoint in objects["endpoints"].items():
        address = _address(endpoint.get("description")) or name
        endpoints[name] = address
        found[address] += 1
        for deployed in endpoint.get("deployedModels") or []:
            found[_address(deployed.get("displayName")) or f"{name}/deployedModels/{deployed.get('id')}"] += 1
        if any(endpoint.get("trafficSplit") or {}):
            found[address.replace(".endpoint.", ".traffic_split.")] += 1
    for name, job in objects["monitoring_jobs"].items():
        watched = endpoints.get(job.get("endpoint", ""))
        found[watched.replace(".endpoint.", ".monitoring_job.") if watched else name] += 1
    return found


def console_delete(fake: GcpFake, kind: str, id: str) -> None:
    """Delete the object `id` of mlplat kind `kind` as someone at the console would (no operation to wait on)."""
    objects = fake.objects
    with fake.lock:
        if kind == "gcp.deployed_model":
            endpoint_name, _, deployed_id = id.partition("/deployedModels/")
            endpoint = objects["endpoints"].get(endpoint_name)
            if endpoint is None:
                return
            endpoint["deployedModels"] = [m for m in endpoint.get("deployedModels") or []
                                          if str(m.get("id")) != deployed_id]
            split = {k: v for k, v in (endpoint.get("trafficSplit") or {}).items() if k != deployed_id}
            total = sum(split.values())
            if split and total:  # the console moves the undeployed model's share to the rest
                shares = {k: v * 100 // total for k, v in split.items()}
                first = next(iter(shares))
                shares[first] += 100 - sum(shares.values())
                split = shares
            endpoint["trafficSplit"] = split if total else {}
        elif kind == "gcp.traffic_split":
            endpoint = objects["endpoints"].get(id.removesuffix("/trafficSplit"))
            if endpoint is not None:
                endpoint["trafficSplit"] = {}
        elif kind in ("gcp.model_artifact", "gcp.monitoring_baseline"):
            bucket, _, key = id.partition("/")
            fake.gcs_delete(bucket, key)  # type: ignore[attr-defined]
        else:
            collection = {"gcp.endpoint": "endpoints", "gcp.model_version": "model_versions",
                          "gcp.filestore_instance": "instances", "gcp.persistent_resource": "persistentResources",
                          "gcp.artifact_repository": "repositories", "gcp.monitoring_job": "monitoring_jobs"}[kind]
            objects[collection].pop(id, None)
