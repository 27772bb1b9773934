"""The harness's console on the fake cluster: every object of a stack counted by the mlplat address it carries, and
objects deleted behind mlplat's back — straight on the fake's store, never through the plugin.

Where an object keeps its address: the `mlplat.dev/address` annotation (every Kubernetes object), the
`dev.mlplat.address` annotation of an OCI manifest in a registry "pod" (models). An object of the stack without
one (in its namespace, or labelled with it) is counted under its kind and name, so it shows as an orphan."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kube_fake import KubeFake

ADDRESS = "mlplat.dev/address"
MANIFEST_ADDRESS = "dev.mlplat.address"


def console_objects(fake: KubeFake, stack: str) -> Counter[str]:
    namespace = f"mlplat-{stack}"
    found: Counter[str] = Counter()
    with fake.lock:
        for objects in fake.store.values():
            for obj in objects.values():
                meta = obj.get("metadata", {})
                ours = (meta.get("labels") or {}).get("mlplat.dev/stack") == stack or \
                    meta.get("namespace") == namespace or meta.get("name") == namespace
                if not ours:
                    continue
                address = (meta.get("annotations") or {}).get(ADDRESS)
                found[address or f"{obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}"] += 1
        for registry in fake.dataplane.registries.values():
            for repo, refs in registry["manifests"].items():
                for body in {body for _ctype, body in refs.values()}:
                    annotations = json.loads(body).get("annotations") or {}
                    if annotations.get("dev.mlplat.stack") == stack:
                        found[annotations.get(MANIFEST_ADDRESS) or f"oci {repo}"] += 1
    return found


def console_delete(fake: KubeFake, kind: str, id: str, inputs: dict[str, Any]) -> None:
    """Delete what `id` of `kind` names, as a cluster admin would (`kubectl delete`, a registry API call)."""
    if kind == "onprem.model_artifact":
        repo, tag = inputs["repository"], inputs["tag"]
        with fake.lock:
            for registry in fake.dataplane.registries.values():
                refs = registry["manifests"].get(repo, {})
                entry = refs.get(tag)
                for ref in [r for r, e in refs.items() if e == entry]:
                    refs.pop(ref)
        return
    rt = fake.catalog.by_kind(inputs["api_version"], inputs["kind"])
    fake.remove_object(rt, inputs.get("namespace") or "", inputs["name"])
