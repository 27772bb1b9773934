"""Training clusters: one AmlCompute cluster per GPU pool.

The cluster is keyed by its caller-chosen name in the workspace (a PUT is an upsert by name), so a replacement
destroys the old one first. Node counts (the scale settings) change in place through the same PUT; Azure refuses to
change the VM size or priority of an existing cluster, so those replace it. The cluster's tags carry the stack,
address and create token.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mlplat_plugins.azure.base import LONG, TOKEN_TAG, AzureProvider
from provisioner.errors import MlplatError
from provisioner.provider import Created, Observed

if TYPE_CHECKING:
    from provisioner.operations import StepContext

TIERS = {"dedicated": "dedicated", "low_priority": "low_priority"}


class ComputeCluster(AzureProvider):
    """Import ID: the compute's ARM id, `/subscriptions/<s>/resourceGroups/<rg>/providers/
    Microsoft.MachineLearningServices/workspaces/<ws>/computes/<name>`."""

    force_new = frozenset({"name", "vm_size", "tier"})
    timeouts = LONG
    import_id = re.compile(r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                           r"Microsoft\.MachineLearningServices/workspaces/[^/]+/computes/[a-zA-Z][a-zA-Z0-9-]{0,15}",
                           re.IGNORECASE)

    @property
    def _group(self) -> Any:
        return self.azure.group("compute")

    def _describe(self, name: str) -> Any:
        return self.get(lambda: self._group.get(name))

    def _entity(self, inputs: dict[str, Any], tags: dict[str, str]) -> Any:
        from azure.ai.ml.entities import AmlCompute

        return AmlCompute(name=inputs["name"], size=inputs["vm_size"], min_instances=inputs["min_nodes"],
                          max_instances=inputs["max_nodes"], tier=TIERS[inputs["tier"]], tags=tags,
                          location=self.settings.location)

    @staticmethod
    def _outputs(compute: Any) -> dict[str, Any]:
        return {"name": compute.name, "id": compute.id}

    def _wait(self, ctx: StepContext, name: str, phase: str) -> Any:
        return self.wait_provisioned(ctx, lambda: self._group.get(name), f"AmlCompute {name}", phase)

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = inputs["name"]
        if ctx.operation is None:
            existing = self._describe(name)
            if existing is not None:  # a create retried after a lost answer or a crash: adopt only our own
                if (existing.tags or {}).get(TOKEN_TAG) != ctx.token or name in ctx.exclude:
                    raise self.refuse_stranger("AmlCompute", name)
                done = self._wait(ctx, name, "Creating")
                return Created(done.id, self._outputs(done))
        self.start(ctx, "CreateCompute", name,
                   lambda: self._group.begin_create_or_update(self._entity(inputs, self.tags(address, ctx))))
        done = self._wait(ctx, name, "Creating")
        return Created(done.id, self._outputs(done))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        name = id.rsplit("/", 1)[-1]
        compute = self._describe(name)
        if compute is None or getattr(compute, "provisioning_state", None) == "Deleting":
            return None
        if getattr(compute, "type", None) not in (None, "amlcompute"):
            return None
        observed = {"name": compute.name, "vm_size": compute.size, "min_nodes": compute.min_instances,
                    "max_nodes": compute.max_instances, "tier": compute.tier}
        vm_size = inputs.get("vm_size")
        if isinstance(vm_size, str) and vm_size.lower() == str(compute.size).lower():
            observed["vm_size"] = vm_size  # Azure answers the size in its own case
        return Observed(observed, self._outputs(compute))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        name = desired["name"]
        if ctx.operation is None:
            live = self._describe(name)
            if live is None:
                raise MlplatError(f"AmlCompute {name} does not exist any more",
                                  hint="run mlplat refresh, then apply")
            tags = {**(live.tags or {}), **self.tags(ctx.address)}
            self.start(ctx, "UpdateCompute", name,
                       lambda: self._group.begin_update(self._entity(desired, tags)))
        done = self._wait(ctx, name, "Updating")
        return self._outputs(done)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        name = id.rsplit("/", 1)[-1]
        self.delete_and_wait(ctx, "DeleteCompute", name, lambda: self._group.begin_delete(name),
                             lambda: self._group.get(name), f"AmlCompute {name}")

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]
        found = self.find_named(name, ctx, lambda: self._group.get(name), lambda c: c.tags)
        if found is None:
            return None
        if found.provisioning_state != "Succeeded":  # a create a crash interrupted: nothing else waits on it
            found = self._wait(ctx, name, "Creating")
        return Created(found.id, self._outputs(found))
