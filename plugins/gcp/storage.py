"""Shared storage: a Filestore instance with one NFS file share (`nas`).

The instance is keyed by its caller-chosen id (the `name` input) in its location (a zone for BASIC_* and ZONAL
tiers, a region for REGIONAL and ENTERPRISE), so a replacement destroys the old one first. Capacity grows in place
(UpdateInstance, update_mask `file_shares`); Filestore refuses to shrink a BASIC tier instance, and that refusal
(INVALID_ARGUMENT, Google's message) is let through for the engine to report at the address. The tier, location,
share name and network only change by replacing the instance. The address is the instance's description
(`describe(address)`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mlplat_plugins.gcp.base import LONG, GcpProvider, describe
from mlplat_plugins.gcp.compute import AlreadyExists, AlreadyGone, same_network, start_or
from provisioner.cloud import unless_missing, wait_for_status
from provisioner.errors import MlplatError
from provisioner.provider import Created, Observed

if TYPE_CHECKING:
    from provisioner.operations import StepContext

NAME = re.compile(r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/instances/(?P<id>[^/]+)")


class FilestoreInstance(GcpProvider):
    """Import ID: the instance's full name, `projects/<p>/locations/<zone or region>/instances/<id>`."""

    force_new = frozenset({"name", "location", "tier", "share", "network"})
    timeouts = LONG
    import_id = re.compile(r"projects/[^/]+/locations/[^/]+/instances/[a-z]([a-z0-9-]{0,61}[a-z0-9])?")

    @property
    def _client(self) -> Any:
        return self.gcp.filestore

    def _full(self, inputs: dict[str, Any]) -> str:
        return f"projects/{self.project}/locations/{inputs['location']}/instances/{inputs['name']}"

    def _get(self, name: str) -> dict[str, Any] | None:
        from mlplat_plugins.gcp.sdk import to_dict

        found = unless_missing(lambda: self._client.get_instance(name=name))
        return to_dict(found) if found is not None else None

    def _wait_ready(self, ctx: StepContext, name: str, phase: str) -> dict[str, Any]:
        return wait_for_status(ctx, lambda: self._get(name), f"Filestore instance {name}", phase, ready="READY",
                               failed=("ERROR",), status_of=lambda i: i.get("state", ""),
                               reason_of=lambda i: i.get("status_message"), **self.intervals)

    def _outputs(self, name: str, instance: dict[str, Any]) -> dict[str, Any]:
        networks = instance.get("networks") or [{}]
        addresses = networks[0].get("ip_addresses") or []
        ip = addresses[0] if addresses else None
        share = (instance.get("file_shares") or [{}])[0].get("name")
        return {"name": name, "ip": ip, "share": share, "nfs": f"{ip}:/{share}" if ip and share else None}

    def _adopt(self, name: str, ctx: StepContext) -> None:
        if self.find_named(name, ctx, lambda: self._get(name), lambda i: i.get("labels")) is None:
            raise MlplatError(f"Filestore instance {name} exists and was not made by this apply",
                              hint="delete it, or rename the storage")

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = self._full(inputs)
        instance = {
            "description": describe(address), "tier": inputs["tier"], "labels": self.labels(ctx),
            "file_shares": [{"name": inputs["share"], "capacity_gb": inputs["capacity_gb"]}],
            "networks": [{"network": inputs["network"], "modes": ["MODE_IPV4"]}],
        }
        start = start_or(lambda: self._client.create_instance(request={
            "parent": name.rsplit("/instances/", 1)[0], "instance_id": inputs["name"], "instance": instance}),
            exists=True)
        try:
            self.run_operation(ctx, "CreateInstance", start, self._client, f"Filestore instance {name}")
        except AlreadyExists:
            self._adopt(name, ctx)  # a retried create, or one a crash interrupted before its checkpoint
        return Created(name, self._outputs(name, self._wait_ready(ctx, name, "Creating")))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        instance = self._get(id)
        if instance is None or instance.get("state") == "DELETING":
            return None
        parts = NAME.fullmatch(id)
        share = (instance.get("file_shares") or [{}])[0]
        network = (instance.get("networks") or [{}])[0].get("network", "")
        wanted = inputs.get("network")
        if isinstance(wanted, str) and same_network(network, wanted):
            network = wanted  # the stack's spelling (a name, or the full path)
        observed = {"name": parts["id"] if parts else id.rsplit("/", 1)[-1],
                    "location": parts["location"] if parts else inputs.get("location"),
                    "tier": instance.get("tier"), "capacity_gb": int(share.get("capacity_gb") or 0),
                    "share": share.get("name"), "network": network}
        return Observed(observed, self._outputs(id, instance))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        live = self._wait_ready(ctx, id, "Updating") if ctx.operation else self._get(id)
        if live is None:
            raise MlplatError(f"Filestore instance {id} does not exist any more", hint="run mlplat refresh, then apply")
        share = (live.get("file_shares") or [{}])[0]
        if int(share.get("capacity_gb") or 0) != desired["capacity_gb"] or ctx.operation:
            self.run_operation(ctx, "UpdateInstance", lambda: self._client.update_instance(request={
                "instance": {"name": id, "file_shares": [{"name": desired["share"],
                                                          "capacity_gb": desired["capacity_gb"]}]},
                "update_mask": {"paths": ["file_shares"]}}), self._client, f"Filestore instance {id}")
            live = self._wait_ready(ctx, id, "Updating")
        return self._outputs(id, live)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        start = start_or(lambda: self._client.delete_instance(name=id), gone=True)
        try:
            self.run_operation(ctx, "DeleteInstance", start, self._client, f"Filestore instance {id}")
        except AlreadyGone:
            return

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = self._full(inputs)
        found = self.find_named(name, ctx, lambda: self._get(name), lambda i: i.get("labels"))
        if found is None:
            return None
        if found.get("state") != "READY":  # a create a crash interrupted: nothing else will wait on it
            found = self._wait_ready(ctx, name, "Creating")
        return Created(name, self._outputs(name, found))
