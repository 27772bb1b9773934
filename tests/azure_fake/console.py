"""The harness's console on the fake Azure: every object counted by the mlplat address it carries, and objects
deleted behind mlplat's back — straight on the fake's state, never through the plugin.

Where an object keeps its address: the `mlplat-address` tag (ARM resources: top-level `tags`, or
`properties.tags` for workspace assets), or `mlplat_address` metadata (file shares and blobs, whose metadata names
cannot hold a dash). An endpoint's traffic is its non-empty `properties.traffic` / `mirrorTraffic`. What every
workspace has (its default datastores, their container and share) and what Azure ML registers on its own
(anonymous environments, a data collector's model_inputs / model_outputs data assets) is no platform object and is
not counted.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure_fake import AzureFake

#: collections of ARM objects mlplat makes
ARM_COLLECTIONS = ("computes", "datastores", "model_versions", "data_versions", "online_endpoints",
                   "online_deployments", "schedules")
DEFAULT_DATASTORES = ("workspaceblobstore", "workspacefilestore")


def _tags(obj: dict[str, Any]) -> dict[str, str]:
    return obj.get("tags") or (obj.get("properties") or {}).get("tags") or {}


def console_objects(fake: AzureFake) -> Counter[str]:
    found: Counter[str] = Counter()
    with fake.lock:
        for collection in ARM_COLLECTIONS:
            for key, obj in fake.objects[collection].items():
                if collection == "datastores" and obj.get("name") in DEFAULT_DATASTORES:
                    continue
                address = _tags(obj).get("mlplat-address")
                if address is None and collection == "data_versions":
                    continue  # a data collector's own assets (model_inputs/outputs), registered by Azure ML
                found[address or f"{collection}/{key}"] += 1
                if collection == "online_endpoints" and address:
                    props = obj.get("properties") or {}
                    if any((props.get("traffic") or {}).values()) or any((props.get("mirrorTraffic") or {}).values()):
                        found[address.replace(".online_endpoint.", ".endpoint_traffic.")] += 1
        for obj in fake.objects["shares"].values():
            address = (obj.get("metadata") or {}).get("mlplat_address")
            if address:
                found[address] += 1
        for key, obj in fake.objects["blobs"].items():  # an asset's blob is part of it: counted when left alone
            address = (obj.get("metadata") or {}).get("mlplat_address")
            if (address and address not in found) or (not address and "/mlplat/" in f"/{key}"):
                found[f"blob {key}"] += 1
    return found


def console_delete(fake: AzureFake, kind: str, id: str, inputs: dict[str, Any]) -> None:
    """Delete the object `id` of mlplat kind `kind` as someone in the portal would (at once, no operation)."""
    objects = fake.objects
    with fake.lock:
        if kind == "azure.online_deployment":
            endpoint, _, name = id.partition("/")
            live = objects["online_endpoints"].get(endpoint.lower())
            if live is not None:  # the portal moves its traffic off first, as Azure requires
                for field in ("traffic", "mirrorTraffic"):
                    split = live["properties"].get(field) or {}
                    share = split.pop(name, 0)
                    rest = [k for k, v in split.items() if v]
                    if share and rest and field == "traffic":
                        split[rest[0]] += share
            for key in [k for k in objects["online_deployments"] if k.lower() == id.lower()
                        or (k.lower().endswith(f"/{name.lower()}") and k.lower().startswith(endpoint.lower()))]:
                del objects["online_deployments"][key]
        elif kind == "azure.endpoint_traffic":
            live = objects["online_endpoints"].get(id.split("/")[0].lower())
            if live is not None:
                live["properties"]["traffic"], live["properties"]["mirrorTraffic"] = {}, {}
        elif kind == "azure.online_endpoint":
            objects["online_endpoints"].pop(id.lower(), None)
            for key in [k for k in objects["online_deployments"] if k.lower().startswith(f"{id.lower()}/")]:
                del objects["online_deployments"][key]
        elif kind == "azure.file_share":
            objects["shares"].pop(f"{inputs['account']}/{id.rsplit('/', 1)[-1]}", None)
        elif kind in ("azure.model", "azure.monitoring_baseline"):
            collection = "model_versions" if kind == "azure.model" else "data_versions"
            name, version = id.split(":")[-2:]
            objects[collection].pop(f"{name}/{version}", None)
            for key, blob in list(objects["blobs"].items()):
                if (blob.get("metadata") or {}).get("mlplat_address") and key.endswith("/" + inputs.get("path", "-")):
                    del objects["blobs"][key]
        else:
            collection = {"azure.compute": "computes", "azure.datastore": "datastores",
                          "azure.monitor_schedule": "schedules"}[kind]
            name = id.rsplit("/", 1)[-1].lower()
            for key in [k for k in objects[collection] if k.lower() == name]:
                del objects[collection][key]
