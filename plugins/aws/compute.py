"""GPU pools as a SageMaker HyperPod cluster: one instance group per pool.

Counts change in place with UpdateCluster. An instance group's type cannot change, so a new accelerator gives
the group a new name (the accelerator is part of it): UpdateCluster adds the new group and deletes the old one
(InstanceGroupsToDelete), replacing that group only, never the cluster.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

from mlplat_plugins.aws.base import AwsProvider
from provisioner.cloud import operation_id, or_existing, unless_missing
from provisioner.operations import StepContext
from provisioner.progress import report
from provisioner.provider import Created, Observed

#: uploaded when the stack names no lifecycle scripts: HyperPod requires an OnCreate script to exist
DEFAULT_ON_CREATE = """#!/bin/bash
# Written by mlplat: HyperPod runs this on every new node. Replace it through targets.<aws>.lifecycle_script_uri
# with your own (e.g. the Slurm setup from awsome-distributed-training) for a scheduler on the cluster.
set -euo pipefail
echo "mlplat: node $(hostname) ready"
"""


#: a SageMaker object name (clusters, models, endpoint configs, endpoints, model package groups): what mlplat
#: records as their id, so what `mlplat import` takes (an ARN is not a name)
SAGEMAKER_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


class HyperPodCluster(AwsProvider):
    """CreateCluster and UpdateCluster are long operations, checkpointed before the wait; a step resumed after a
    crash waits for the cluster to settle and converges from what it sees, never issuing the call twice.

    Import ID: the cluster's name (`mlplat import train.hyperpod_cluster.main my-cluster`)."""

    force_new = frozenset({"name", "role_arn", "subnets", "security_groups"})
    timeouts = {"create": 3600.0, "update": 3600.0, "delete": 1800.0}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = inputs["name"]
        if ctx.operation is None:
            if inputs["upload_default_lifecycle"]:
                self._upload_default_lifecycle(inputs)
            groups = [self._group(g, inputs) for g in inputs["groups"]]
            args: dict[str, Any] = {"ClusterName": name, "InstanceGroups": groups, "Tags": self.tags(address, ctx)}
            if inputs["subnets"] and inputs["security_groups"]:  # HyperPod needs both, or neither
                args["VpcConfig"] = {"Subnets": inputs["subnets"], "SecurityGroupIds": inputs["security_groups"]}
            or_existing(lambda: self.aws.sagemaker.create_cluster(**args),
                        lambda: report(f"cluster {name} exists already (a retried create): adopting it"))
            ctx.checkpoint(operation_id("CreateCluster", name))
        cluster = self._wait_in_service(ctx, name, "Creating")
        current = self._observed(cluster, inputs)
        if current["groups"] != inputs["groups"]:
            return Created(name, self.update(name, current, inputs, ctx))
        return Created(name, self._outputs(cluster))

    def _group(self, group: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        return {"InstanceGroupName": group["name"], "InstanceType": group["instance_type"],
                "InstanceCount": group["count"], "ExecutionRole": inputs["role_arn"], "ThreadsPerCore": 1,
                "LifeCycleConfig": {"SourceS3Uri": inputs["lifecycle_script_uri"],
                                    "OnCreate": inputs["lifecycle_on_create"]}}

    def _upload_default_lifecycle(self, inputs: dict[str, Any]) -> None:
        self.aws.s3.put_object(**_script_location(inputs), Body=DEFAULT_ON_CREATE.encode())

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if ctx.operation is not None:  # an operation on it is under way (resumed, or just created): let it settle
            cluster = self._wait_in_service(ctx, id, "Updating")
            prior = self._observed(cluster, desired)  # converge from what is there: an applied update is not redone
            if prior["groups"] == desired["groups"]:
                return self._outputs(cluster)
        wanted = {g["name"] for g in desired["groups"]}
        before = {g["name"]: g for g in prior["groups"]}
        changed = [g for g in desired["groups"] if before.get(g["name"]) != g]
        removed = sorted(set(before) - wanted)
        args: dict[str, Any] = {"ClusterName": id}
        if changed:
            args["InstanceGroups"] = [self._group(g, desired) for g in changed]
        if removed:
            args["InstanceGroupsToDelete"] = removed
        if changed or removed:
            report(f"update_cluster: {len(changed)} group(s) added/resized, {len(removed)} removed")
            self.aws.sagemaker.update_cluster(**args)
            ctx.checkpoint(operation_id("UpdateCluster", id))
        return self._outputs(self._wait_in_service(ctx, id, "Updating"))

    def _describe(self, name: str) -> dict[str, Any] | None:
        return unless_missing(lambda: self.aws.sagemaker.describe_cluster(ClusterName=name))

    def _wait_in_service(self, ctx: StepContext, name: str, phase: str) -> dict[str, Any]:
        return self.wait_in_service(ctx, lambda: self._describe(name), f"HyperPod cluster {name}", phase,
                                    status_key="ClusterStatus", reason_key="FailureMessage")

    @staticmethod
    def _outputs(cluster: dict[str, Any]) -> dict[str, Any]:
        return {"name": cluster["ClusterName"], "arn": cluster["ClusterArn"]}

    @staticmethod
    def _observed(cluster: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        declared = {g["name"]: g for g in inputs["groups"]}
        groups = []
        for g in cluster.get("InstanceGroups", []):
            name = g["InstanceGroupName"]
            groups.append({"name": name, "pool": declared.get(name, {}).get("pool", name),
                           "instance_type": g["InstanceType"], "count": g.get("TargetCount", g.get("CurrentCount"))})
        order = list(declared)
        groups.sort(key=lambda g: (order.index(g["name"]) if g["name"] in order else len(order), g["name"]))
        return {**inputs, "groups": groups}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        cluster = self._describe(id)
        if cluster is None or cluster["ClusterStatus"] == "Deleting":
            return None
        return Observed(self._observed(cluster, inputs), self._outputs(cluster))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """`read`'s instance groups, and this cluster's own values of what `read` takes from the record (the
        stack's, for a cluster mlplat made): name, role, network and lifecycle scripts (HyperPod keeps them per
        instance group; mlplat uses one for all, and sends them with the groups it adds or resizes). The default
        scripts are mlplat's to delete with the cluster only where this cluster runs them from the stack's place."""
        cluster = self._describe(id) if SAGEMAKER_NAME.fullmatch(id) else None
        if cluster is None or cluster["ClusterStatus"] == "Deleting":
            return None
        first = (cluster.get("InstanceGroups") or [{}])[0]
        life = first.get("LifeCycleConfig") or {}
        scripts = (life.get("SourceS3Uri"), life.get("OnCreate"))
        ours = scripts == (inputs["lifecycle_script_uri"], inputs["lifecycle_on_create"])
        observed = {**self._observed(cluster, inputs), "name": cluster["ClusterName"],
                    "role_arn": first.get("ExecutionRole"), "lifecycle_script_uri": scripts[0],
                    "lifecycle_on_create": scripts[1],
                    "upload_default_lifecycle": bool(inputs["upload_default_lifecycle"] and ours),
                    **vpc_inputs(cluster.get("VpcConfig"), inputs)}
        return Observed(observed, self._outputs(cluster))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]
        cluster = self.find_named(name, ctx, lambda: self._describe(name), lambda c: c["ClusterArn"])
        return Created(name, self._outputs(cluster)) if cluster is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        if not self.delete_and_wait(ctx, "DeleteCluster", id, lambda: self.aws.sagemaker.delete_cluster(ClusterName=id),
                                    lambda: self._describe(id), f"HyperPod cluster {id}"):
            return  # gone already
        if inputs.get("upload_default_lifecycle"):
            self.aws.s3.delete_object(**_script_location(inputs))


def vpc_inputs(config: dict[str, Any] | None, inputs: dict[str, Any]) -> dict[str, list[str]]:
    """`subnets` and `security_groups` as a SageMaker object's VpcConfig has them, in the stack's order where they
    are the same sets; with no VpcConfig, the stack's where its create would have set none either (it needs both)."""
    wanted = {"subnets": list(inputs["subnets"]), "security_groups": list(inputs["security_groups"])}
    if not config:
        return wanted if not (wanted["subnets"] and wanted["security_groups"]) else {"subnets": [],
                                                                                     "security_groups": []}
    seen = {"subnets": list(config.get("Subnets") or []), "security_groups": list(config.get("SecurityGroupIds") or [])}
    return {k: wanted[k] if sorted(wanted[k]) == sorted(v) else v for k, v in seen.items()}


def _script_location(inputs: dict[str, Any]) -> dict[str, str]:
    uri = urlparse(inputs["lifecycle_script_uri"])
    return {"Bucket": uri.netloc, "Key": f"{uri.path.lstrip('/')}{inputs['lifecycle_on_create']}"}
