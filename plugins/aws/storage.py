"""Shared storage: EFS file systems and their mount targets, FSx for Lustre."""

from __future__ import annotations

import re
from typing import Any

from mlplat_plugins.aws.base import ADDRESS_TAG, AwsProvider, made_by, tag_value
from mlplat_plugins.aws.sdk import AwsApiError
from provisioner.cloud import operation_id, operation_of, unless_missing
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed

#: the ids mlplat records for these kinds, so what `mlplat import` takes
EFS_ID = re.compile(r"fs-[0-9a-f]{8,40}")
MOUNT_TARGET_ID = re.compile(r"fsmt-[0-9a-f]{8,40}")
FSX_ID = re.compile(r"fs-[0-9a-f]{8,21}")


class EfsFileSystem(AwsProvider):
    """Idempotent through CreationToken (derived from the address): a retried create finds the first one. The
    create that made it is named by a tag (the engine's token), which is how `find` tells it from a predecessor.

    Import ID: the file system id (`fs-…`). An imported file system keeps the CreationToken it was made with; the
    recorded `token` is the stack's, which only a create of this address (a replacement) uses."""

    force_new = frozenset({"token", "performance_mode", "encrypted"})
    timeouts = {"create": 900.0, "update": 900.0, "delete": 900.0}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        resumed = operation_of(ctx, "CreateFileSystem")
        if resumed:
            fs_id = resumed[0]
        else:
            try:
                fs = self.aws.efs.create_file_system(
                    CreationToken=inputs["token"], PerformanceMode=inputs["performance_mode"],
                    Encrypted=inputs["encrypted"], Tags=[{"Key": "Name", "Value": address}, *self.tags(address, ctx)])
            except AwsApiError as err:
                if err.code != "FileSystemAlreadyExists":
                    raise
                found = self._by_token(inputs["token"])
                if found is None:
                    raise
                fs = found
            fs_id = fs["FileSystemId"]
            ctx.checkpoint(operation_id("CreateFileSystem", fs_id))
        fs = self.wait(ctx, lambda: self._available(fs_id), f"EFS {fs_id} available")
        return Created(fs_id, self._outputs(fs))

    def _available(self, fs_id: str) -> tuple[bool, Any]:
        fs = self.aws.efs.describe_file_systems(FileSystemId=fs_id)["FileSystems"][0]
        if fs["LifeCycleState"] == "error":
            raise MlplatError(f"EFS {fs_id} went to state error")
        return fs["LifeCycleState"] == "available", fs

    def _by_token(self, token: str) -> dict[str, Any] | None:
        found = self.aws.efs.describe_file_systems(CreationToken=token)["FileSystems"]
        return found[0] if found else None

    def _outputs(self, fs: dict[str, Any]) -> dict[str, Any]:
        return {"id": fs["FileSystemId"], "arn": fs.get("FileSystemArn"),
                "dns_name": f"{fs['FileSystemId']}.efs.{self.settings.region}.amazonaws.com"}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        found = unless_missing(lambda: self.aws.efs.describe_file_systems(FileSystemId=id)["FileSystems"])
        if found is None:
            return None
        if not found or found[0]["LifeCycleState"] in ("deleting", "deleted"):
            return None
        fs = found[0]  # its CreationToken never changes, so is never drift: the recorded one (an import's differs)
        return Observed({"token": inputs.get("token", fs["CreationToken"]), "performance_mode": fs["PerformanceMode"],
                         "encrypted": bool(fs.get("Encrypted"))}, self._outputs(fs))

    import_id = EFS_ID

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        fs = self._by_token(inputs["token"])
        if fs is None or fs["FileSystemId"] in ctx.exclude or (ctx.token and not made_by(fs.get("Tags"), ctx)):
            return None
        return Created(fs["FileSystemId"], self._outputs(fs))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.aws.efs.delete_file_system(FileSystemId=id))


class EfsMountTarget(AwsProvider):
    """Import ID: the mount target id (`fsmt-…`); import its file system first, so `file_system` is known."""

    force_new = frozenset({"file_system", "subnet"})

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        args: dict[str, Any] = {"FileSystemId": inputs["file_system"], "SubnetId": inputs["subnet"]}
        if inputs["security_groups"]:
            args["SecurityGroups"] = inputs["security_groups"]
        try:
            mt = self.aws.efs.create_mount_target(**args)
        except AwsApiError as err:
            mt = self._in_subnet(inputs) if err.code == "MountTargetConflict" else None
            if mt is None:
                raise
        return Created(mt["MountTargetId"], self._outputs(mt))

    def _in_subnet(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        fs_id = inputs["file_system"]
        targets = unless_missing(lambda: self.aws.efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"]) or []
        return next((t for t in targets if t["SubnetId"] == inputs["subnet"]), None)

    @staticmethod
    def _outputs(mt: dict[str, Any]) -> dict[str, Any]:
        return {"id": mt["MountTargetId"], "ip_address": mt.get("IpAddress")}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        found = unless_missing(lambda: self.aws.efs.describe_mount_targets(MountTargetId=id)["MountTargets"])
        if found is None:
            return None
        if not found or found[0].get("LifeCycleState") in ("deleting", "deleted"):
            return None
        mt = found[0]
        groups = self.aws.efs.describe_mount_target_security_groups(MountTargetId=id).get("SecurityGroups", [])
        observed = {"file_system": mt["FileSystemId"], "subnet": mt["SubnetId"],
                    "security_groups": sorted(groups) if inputs["security_groups"] else []}
        return Observed(observed, self._outputs(mt))

    import_id = MOUNT_TARGET_ID

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        self.aws.efs.modify_mount_target_security_groups(MountTargetId=id, SecurityGroups=desired["security_groups"])
        return {"id": id}

    def diff(self, prior: dict[str, Any], desired: dict[str, Any]) -> Any:
        sort = lambda d: {**d, "security_groups": sorted(d.get("security_groups") or [])}  # noqa: E731
        return super().diff(sort(prior), sort(desired))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        """Mount targets carry no tags: one per subnet of a file system, so the subnet names it."""
        mt = self._in_subnet(inputs)
        if mt is None or mt["MountTargetId"] in ctx.exclude:
            return None
        return Created(mt["MountTargetId"], self._outputs(mt))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.aws.efs.delete_mount_target(MountTargetId=id))


class FsxLustre(AwsProvider):
    """SCRATCH_2 Lustre. ClientRequestToken (the engine's token) makes a retried create return the same file
    system; the token is also a tag, which is how `find` and a retried create tell it from a predecessor.

    Import ID: the file system id (`fs-…`) of a Lustre file system (another FSx type is not this kind). Like
    `read`, import takes `token` and `security_groups` from the stack (FSx reports network interfaces, not groups)."""

    force_new = frozenset({"token", "subnet", "security_groups"})
    timeouts = {"create": 3600.0, "update": 7200.0, "delete": 1800.0}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        resumed = operation_of(ctx, "CreateFileSystem")
        if resumed:
            fs_id = resumed[0]
        else:
            existing = self._tagged(address, ctx)
            if existing is None:
                args: dict[str, Any] = {
                    "ClientRequestToken": (ctx.token or inputs["token"])[:63], "FileSystemType": "LUSTRE",
                    "StorageCapacity": inputs["storage_gb"], "SubnetIds": [inputs["subnet"]],
                    "LustreConfiguration": {"DeploymentType": "SCRATCH_2"},
                    "Tags": [{"Key": "Name", "Value": address}, *self.tags(address, ctx)]}
                if inputs["security_groups"]:
                    args["SecurityGroupIds"] = inputs["security_groups"]
                existing = self.aws.fsx.create_file_system(**args)["FileSystem"]
            fs_id = existing["FileSystemId"]
            ctx.checkpoint(operation_id("CreateFileSystem", fs_id))
        fs = self.wait(ctx, lambda: self._available(fs_id), f"FSx {fs_id} available")
        return Created(fs_id, self._outputs(fs))

    def _describe(self, fs_id: str) -> dict[str, Any] | None:
        found = unless_missing(lambda: self.aws.fsx.describe_file_systems(FileSystemIds=[fs_id])["FileSystems"])
        if found is None:
            return None
        return found[0] if found else None

    def _available(self, fs_id: str) -> tuple[bool, Any]:
        fs = self._describe(fs_id)
        if fs is None or fs["Lifecycle"] in ("FAILED", "MISCONFIGURED"):
            raise MlplatError(f"FSx {fs_id} failed: {(fs or {}).get('FailureDetails', {}).get('Message', 'gone')}")
        return fs["Lifecycle"] == "AVAILABLE", fs

    def _tagged(self, address: str, ctx: StepContext) -> dict[str, Any] | None:
        """The file system the create carrying `ctx.token` made (without a token: the one tagged with `address`),
        never one in `ctx.exclude`."""
        for fs in self.aws.fsx.paginate("describe_file_systems", "FileSystems"):
            if fs["Lifecycle"] == "DELETING" or fs["FileSystemId"] in ctx.exclude:
                continue
            if (made_by(fs.get("Tags"), ctx)) if ctx.token else (tag_value(fs.get("Tags"), ADDRESS_TAG) == address):
                return fs
        return None

    def _outputs(self, fs: dict[str, Any]) -> dict[str, Any]:
        return {"id": fs["FileSystemId"], "dns_name": fs.get("DNSName"),
                "mount_name": (fs.get("LustreConfiguration") or {}).get("MountName")}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        fs = self._describe(id)
        if fs is None or fs["Lifecycle"] == "DELETING":
            return None
        observed = {**inputs, "storage_gb": fs["StorageCapacity"], "subnet": fs["SubnetIds"][0]}
        return Observed(observed, self._outputs(fs))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        fs = self._describe(id) if FSX_ID.fullmatch(id) else None
        if fs is None or fs.get("FileSystemType") != "LUSTRE":
            return None
        return self.read(id, inputs)

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if operation_of(ctx, "UpdateFileSystem"):  # resumed after a crash: the resize was issued, wait for it
            return self._resized(ctx, id)
        if desired["storage_gb"] < prior["storage_gb"]:
            raise MlplatError(f"FSx for Lustre cannot shrink ({prior['storage_gb']} → {desired['storage_gb']} GiB)",
                              hint="keep size_gb, or create a new storage component and copy the data")
        self.aws.fsx.update_file_system(FileSystemId=id, StorageCapacity=desired["storage_gb"])
        ctx.checkpoint(operation_id("UpdateFileSystem", id))
        return self._resized(ctx, id)

    def _resized(self, ctx: StepContext, id: str) -> dict[str, Any]:
        return self._outputs(self.wait(ctx, lambda: self._available(id), f"FSx {id} resize"))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        fs = self._tagged(address, ctx)
        return Created(fs["FileSystemId"], self._outputs(fs)) if fs else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.aws.fsx.delete_file_system(FileSystemId=id))
