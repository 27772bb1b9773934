"""Training clusters: a Vertex AI persistent resource, one resource pool per GPU pool.

A persistent resource is keyed by its caller-chosen id (the `name` input), so a replacement destroys the old one
first (the default `destroy_before_create`). Replica counts and autoscaling bounds change in place
(UpdatePersistentResource, update_mask `resource_pools`); a pool's machine (machine type, accelerator type and
count) is immutable in Vertex AI, and so is the set of pools, so changing either replaces the resource: `diff`
marks `pools` as forcing replacement only when something other than the counts changed.

The address is kept in the `mlplat-address` label (label-safe: `label_value(address)`, dots become dashes), since
the display name is the cluster's name; the stack and the create's token are labels too (`GcpProvider.labels`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlplat_plugins.gcp.base import LONG, GcpProvider, label_value
from provisioner.cloud import CloudApiError, unless_missing, wait_for_status
from provisioner.errors import MlplatError, RetryableError
from provisioner.progress import report
from provisioner.provider import Created, Diff, Observed

if TYPE_CHECKING:
    from provisioner.operations import StepContext

#: the label holding an object's mlplat address, in label form
ADDRESS_LABEL = "mlplat-address"
#: a pool's fields that only change by replacing the persistent resource
POOL_MACHINE = ("id", "machine_type", "accelerator_type", "accelerator_count")
#: a pool's fields UpdatePersistentResource changes in place
POOL_COUNTS = ("replica_count", "min_replica_count", "max_replica_count")
#: the network name that means "not peered": Vertex AI needs VPC peering set up for a network, the Filestore default
#: network needs none, so the setting's default leaves a persistent resource unpeered
UNPEERED = "default"


class AlreadyExists(Exception):
    """A create answered ALREADY_EXISTS: adopt the object (when it is ours) instead of waiting on an operation."""


class AlreadyGone(Exception):
    """A delete answered NOT_FOUND: nothing to wait on."""


def start_or(call: Callable[[], Any], *, exists: bool = False, gone: bool = False) -> Callable[[], Any]:
    """`call` for `run_operation`, turning ALREADY_EXISTS into `AlreadyExists` / NOT_FOUND into `AlreadyGone`."""

    def start() -> Any:
        try:
            return call()
        except CloudApiError as err:
            if exists and err.already_exists:
                raise AlreadyExists() from None
            if gone and err.not_found:
                raise AlreadyGone() from None
            raise

    return start


def network_path(project: str, network: str) -> str:
    """A network as Vertex AI takes it: `projects/<p>/global/networks/<name>` ("" for the unpeered default)."""
    if network == UNPEERED:
        return ""
    return network if network.startswith("projects/") else f"projects/{project}/global/networks/{network}"


def same_network(observed: str, wanted: str) -> bool:
    """Google answers a network with the project's number where the stack may name the project's id: compare the
    network's own name."""
    return observed.rsplit("/", 1)[-1] == wanted.rsplit("/", 1)[-1] if observed and wanted else observed == wanted


class PersistentResource(GcpProvider):
    """Import ID: the persistent resource's full name, `projects/<p>/locations/<region>/persistentResources/<id>`.

    Autoscaled pools (max above min): the replica count is the autoscaler's, so `read` reports the stack's while the
    live count is within the bounds, and an update keeps the live count (clamped into the new bounds)."""

    force_new = frozenset({"name", "display_name", "network", "service_account"})
    timeouts = LONG
    import_id = re.compile(r"projects/[^/]+/locations/[^/]+/persistentResources/[a-z]([a-z0-9-]{0,61}[a-z0-9])?")

    # --- names and shapes --------------------------------------------------------------------------------

    def _full(self, inputs: dict[str, Any]) -> str:
        return f"{self.location}/persistentResources/{inputs['name']}"

    @property
    def _client(self) -> Any:
        return self.gcp.persistent_resources

    def _get(self, name: str) -> dict[str, Any] | None:
        from mlplat_plugins.gcp.sdk import to_dict

        found = unless_missing(lambda: self._client.get_persistent_resource(name=name))
        return to_dict(found) if found is not None else None

    def _pool(self, pool: dict[str, Any], live: dict[str, Any] | None = None) -> dict[str, Any]:
        machine: dict[str, Any] = {"machine_type": pool["machine_type"]}
        if pool["accelerator_type"]:
            machine.update(accelerator_type=pool["accelerator_type"], accelerator_count=pool["accelerator_count"])
        low, high, count = pool["min_replica_count"], pool["max_replica_count"], pool["replica_count"]
        body: dict[str, Any] = {"id": pool["id"], "machine_spec": machine}
        if high > low:  # Vertex AI wants min < max in an autoscaling spec: none for a fixed-size pool
            body["autoscaling_spec"] = {"min_replica_count": low, "max_replica_count": high}
            if live is not None:  # the autoscaler's count, kept within the new bounds
                count = min(max(int(live.get("replica_count") or 0), low), high)
        body["replica_count"] = count
        return body

    def _body(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        body: dict[str, Any] = {
            "display_name": inputs["display_name"],
            "resource_pools": [self._pool(p) for p in inputs["pools"]],
            "labels": {**self.labels(ctx), ADDRESS_LABEL: label_value(address)},
        }
        network = network_path(self.project, inputs["network"])
        if network:
            body["network"] = network
        if inputs["service_account"]:
            body["resource_runtime_spec"] = {"service_account_spec": {
                "enable_custom_service_account": True, "service_account": inputs["service_account"]}}
        return body

    def _observed(self, resource: dict[str, Any], inputs: dict[str, Any]) -> Observed:
        wanted = {p["id"]: p for p in inputs.get("pools") or [] if isinstance(p, dict)}
        pools = [_pool_inputs(p, wanted.get(p.get("id"))) for p in resource.get("resource_pools", [])]
        network = resource.get("network") or ""
        stack_network = inputs.get("network")
        if isinstance(stack_network, str) and same_network(network, network_path(self.project, stack_network)):
            network = stack_network
        account = (resource.get("resource_runtime_spec") or {}).get("service_account_spec") or {}
        observed = {"name": resource["name"].rsplit("/", 1)[-1], "display_name": resource.get("display_name", ""),
                    "pools": pools, "network": network or UNPEERED,
                    "service_account": account.get("service_account") or None}
        return Observed(observed, self._outputs(resource))

    def _outputs(self, resource: dict[str, Any]) -> dict[str, Any]:
        short = resource["name"].rsplit("/", 1)[-1]
        return {"name": f"{self.location}/persistentResources/{short}", "id": short}

    def diff(self, prior: dict[str, Any], desired: dict[str, Any]) -> Diff:
        found = super().diff(_sorted_pools(prior), _sorted_pools(desired))
        if "pools" in found.changed and _machines(prior) != _machines(desired):
            return Diff(found.changed, tuple(k for k in found.changed if k in self.force_new or k == "pools"))
        return found

    # --- waits --------------------------------------------------------------------------------------

    def _wait_running(self, ctx: StepContext, name: str, phase: str) -> dict[str, Any]:
        return wait_for_status(ctx, lambda: self._get(name), f"persistent resource {name}", phase,
                               ready="RUNNING", failed=("ERROR",), status_of=lambda r: r.get("state", ""),
                               reason_of=lambda r: (r.get("error") or {}).get("message"), **self.intervals)

    def _adopt(self, name: str, ctx: StepContext) -> None:
        if self.find_named(name, ctx, lambda: self._get(name), lambda r: r.get("labels")) is None:
            raise MlplatError(f"persistent resource {name} exists and was not made by this apply",
                              hint="delete it, or rename the cluster")

    # --- the provider ---------------------------------------------------------------------------------

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = self._full(inputs)
        body = self._body(address, inputs, ctx)
        start = start_or(lambda: self._client.create_persistent_resource(request={
            "parent": self.location, "persistent_resource_id": inputs["name"], "persistent_resource": body}),
            exists=True)
        try:
            try:
                self.run_operation(ctx, "CreatePersistentResource", start, self._client,
                                   f"persistent resource {name}")
            except AlreadyExists:
                self._adopt(name, ctx)  # a retried create, or one a crash interrupted before its checkpoint
            resource = self._wait_running(ctx, name, "Creating")
        except MlplatError as err:
            if not isinstance(err, RetryableError):
                self._discard_failed(ctx, name)
            raise
        return Created(name, self._outputs(resource))

    def _discard_failed(self, ctx: StepContext, name: str) -> None:
        """A create of this step that ended in ERROR (a stockout, a quota) leaves the resource behind, holding its
        id: delete it, so the failure is reported with nothing left over and the next apply creates afresh."""
        try:
            failed = self._get(name)
            if failed is None or failed.get("state") != "ERROR" or not ctx.token or \
                    self.token_of(failed.get("labels")) != ctx.token:
                return
            started = unless_missing(lambda: self._client.delete_persistent_resource(name=name))
            if started is not None:
                self.wait_operation(ctx, self._client, started.operation.name, f"failed persistent resource {name}")
        except MlplatError as err:  # the create's own failure is what to report
            report(f"could not delete the failed persistent resource {name}: {err}")

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        resource = self._get(id)
        if resource is None or resource.get("state") == "STOPPING":  # being deleted
            return None
        return self._observed(resource, inputs)

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        live = self._wait_running(ctx, id, "Updating") if ctx.operation else self._get(id)
        if live is None:
            raise MlplatError(f"persistent resource {id} does not exist any more",
                              hint="run mlplat refresh, then apply")
        live_pools = {p.get("id"): p for p in live.get("resource_pools", [])}
        pools = [self._pool(p, live_pools.get(p["id"])) for p in desired["pools"]]
        observed = _sorted_pools(self._observed(live, desired).inputs)["pools"]
        if observed != _sorted_pools(desired)["pools"] or ctx.operation:
            self.run_operation(ctx, "UpdatePersistentResource", lambda: self._client.update_persistent_resource(
                request={"persistent_resource": {"name": id, "resource_pools": pools},
                         "update_mask": {"paths": ["resource_pools"]}}), self._client, f"persistent resource {id}")
            live = self._wait_running(ctx, id, "Updating")
        return self._outputs(live)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        start = start_or(lambda: self._client.delete_persistent_resource(name=id), gone=True)
        try:
            self.run_operation(ctx, "DeletePersistentResource", start, self._client, f"persistent resource {id}")
        except AlreadyGone:
            return

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = self._full(inputs)
        found = self.find_named(name, ctx, lambda: self._get(name), lambda r: r.get("labels"))
        if found is None:
            return None
        if found.get("state") != "RUNNING":  # a create a crash interrupted: nothing else will wait on it
            found = self._wait_running(ctx, name, "Creating")
        return Created(name, self._outputs(found))


def _pool_inputs(pool: dict[str, Any], wanted: dict[str, Any] | None) -> dict[str, Any]:
    """A resource pool as the stack's `pools` entry (see the class docstring for an autoscaled count)."""
    machine = pool.get("machine_spec") or {}
    accelerator = machine.get("accelerator_type")
    if accelerator in (None, "", "ACCELERATOR_TYPE_UNSPECIFIED"):
        accelerator = None
    count = int(pool.get("replica_count") or 0)
    scaling = pool.get("autoscaling_spec")
    low, high = (int(scaling.get("min_replica_count") or 0), int(scaling.get("max_replica_count") or 0)) \
        if scaling else (count, count)
    if wanted is not None and high > low and low <= count <= high and \
            (wanted.get("min_replica_count"), wanted.get("max_replica_count")) == (low, high):
        count = wanted["replica_count"]
    return {"id": pool.get("id", ""), "machine_type": machine.get("machine_type", ""),
            "accelerator_type": accelerator, "accelerator_count": int(machine.get("accelerator_count") or 0),
            "replica_count": count, "min_replica_count": low, "max_replica_count": high}


def _sorted_pools(inputs: dict[str, Any]) -> dict[str, Any]:
    pools = inputs.get("pools")
    if not isinstance(pools, list) or not all(isinstance(p, dict) for p in pools):
        return inputs
    return {**inputs, "pools": sorted(pools, key=lambda p: str(p.get("id")))}


def _machines(inputs: dict[str, Any]) -> Any:
    """The pools without their counts: what only a replacement changes."""
    pools = _sorted_pools(inputs).get("pools")
    if not isinstance(pools, list):
        return pools
    return [{k: p.get(k) for k in POOL_MACHINE} if isinstance(p, dict) else p for p in pools]
