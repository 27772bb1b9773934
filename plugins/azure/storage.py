"""Shared storage (`nas`): an Azure file share in a storage account, registered in the workspace as an
AzureFileDatastore.

The share is a data-plane object (azure-storage-file-share, Entra ID token with the backup intent), not an ARM
resource: it has no tags, so the stack, address and create token go in its metadata, whose names must be C#
identifiers (`mlplat_stack`, `mlplat_address`, `mlplat_token`). Its quota grows or shrinks in place; its name and
account replace it (destroy first: the name is the key). Creates and deletes are immediate: nothing to wait on.

The datastore is an ARM object with no provisioning state (a PUT answers the final object): identity-based (no
credentials stored: jobs reach the share with their own identity), tagged like every Azure ML asset. Pointing it at
another share is an in-place PUT; its name replaces it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mlplat_plugins.azure.base import ADDRESS_TAG, STACK_TAG, TOKEN_TAG, AzureProvider
from mlplat_plugins.azure.sdk import Client
from provisioner.cloud import unless_missing
from provisioner.errors import MlplatError
from provisioner.provider import Created, Observed

if TYPE_CHECKING:
    from provisioner.operations import StepContext

#: tag names → share metadata names (metadata names must be C# identifiers: no '-')
METADATA = {STACK_TAG: "mlplat_stack", ADDRESS_TAG: "mlplat_address", TOKEN_TAG: "mlplat_token"}
SHARE_URL = re.compile(r"https://(?P<account>[a-z0-9]{3,24})\.file\.core\.windows\.net/"
                       r"(?P<name>[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9])")


def share_url(account: str, name: str) -> str:
    return f"https://{account}.file.core.windows.net/{name}"


class FileShare(AzureProvider):
    """Import ID: the share's URL, `https://<account>.file.core.windows.net/<share>`."""

    force_new = frozenset({"account", "name"})
    import_id = SHARE_URL

    def _share(self, account: str, name: str) -> Client:
        """The share's own client, its errors translated like the service client's."""
        return Client(self.azure.share(account).get_share_client(name), f"file:{account}/{name}")

    def _properties(self, account: str, name: str) -> Any:
        return self.get(lambda: self._share(account, name).get_share_properties())

    def _metadata(self, address: str, ctx: StepContext | None) -> dict[str, str]:
        return {METADATA[k]: v for k, v in self.tags(address, ctx).items()}

    @staticmethod
    def _token(share: Any) -> str | None:
        return (share.metadata or {}).get(METADATA[TOKEN_TAG])

    @staticmethod
    def _outputs(account: str, name: str) -> dict[str, Any]:
        return {"name": name, "url": share_url(account, name)}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        account, name = inputs["account"], inputs["name"]
        existing = self._properties(account, name)
        if existing is None:
            try:
                self.azure.share(account).create_share(name, quota=inputs["quota_gb"],
                                                       metadata=self._metadata(address, ctx))
            except MlplatError as err:
                if not getattr(err, "already_exists", False):
                    raise
                existing = self._properties(account, name)  # a retried create whose first answer was lost
        if existing is not None:
            if name in ctx.exclude or not ctx.token or self._token(existing) != ctx.token:
                raise self.refuse_stranger("file share", share_url(account, name))
            if existing.quota != inputs["quota_gb"]:
                self._share(account, name).set_share_quota(inputs["quota_gb"])
        return Created(share_url(account, name), self._outputs(account, name))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        parts = SHARE_URL.fullmatch(id)
        if parts is None:
            return None
        share = self._properties(parts["account"], parts["name"])
        if share is None:
            return None
        return Observed({"account": parts["account"], "name": parts["name"], "quota_gb": share.quota},
                        self._outputs(parts["account"], parts["name"]))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        account, name = desired["account"], desired["name"]
        try:
            self._share(account, name).set_share_quota(desired["quota_gb"])
        except MlplatError as err:
            if getattr(err, "not_found", False):
                raise MlplatError(f"file share {share_url(account, name)} does not exist any more",
                                  hint="run mlplat refresh, then apply") from None
            raise
        return self._outputs(account, name)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        parts = SHARE_URL.fullmatch(id)
        account, name = (parts["account"], parts["name"]) if parts else (inputs["account"], inputs["name"])
        unless_missing(lambda: self.azure.share(account).delete_share(name))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        account, name = inputs["account"], inputs["name"]
        url = share_url(account, name)
        if url in ctx.exclude:
            return None
        found = self.find_named(name, ctx, lambda: self._properties(account, name),
                                lambda s: {TOKEN_TAG: self._token(s) or ""})
        return Created(url, self._outputs(account, name)) if found is not None else None


class Datastore(AzureProvider):
    """Import ID: the datastore's ARM id, `/subscriptions/<s>/resourceGroups/<rg>/providers/
    Microsoft.MachineLearningServices/workspaces/<ws>/datastores/<name>`."""

    force_new = frozenset({"name"})
    import_id = re.compile(r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                           r"Microsoft\.MachineLearningServices/workspaces/[^/]+/datastores/[A-Za-z0-9_]{1,255}",
                           re.IGNORECASE)

    @property
    def _group(self) -> Any:
        return self.azure.group("datastores")

    def _entity(self, inputs: dict[str, Any], tags: dict[str, str]) -> Any:
        from azure.ai.ml.entities import AzureFileDatastore

        return AzureFileDatastore(name=inputs["name"], account_name=inputs["account"],
                                  file_share_name=inputs["share"], tags=tags,
                                  description="nas storage of an mlplat stack (identity-based access)")

    @staticmethod
    def _outputs(datastore: Any) -> dict[str, Any]:
        return {"name": datastore.name, "id": datastore.id}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = inputs["name"]
        existing = self.get(lambda: self._group.get(name))
        if existing is not None and (name in ctx.exclude or not ctx.token or
                                     (existing.tags or {}).get(TOKEN_TAG) != ctx.token):
            raise self.refuse_stranger("datastore", name)
        made = self._group.create_or_update(self._entity(inputs, self.tags(address, ctx)))
        return Created(made.id, self._outputs(made))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        name = id.rsplit("/", 1)[-1]
        found = self.get(lambda: self._group.get(name))
        if found is None or getattr(found, "type", None) != "AzureFile":  # a str enum, DatastoreType.AZURE_FILE
            return None
        return Observed({"name": found.name, "account": found.account_name, "share": found.file_share_name},
                        self._outputs(found))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        name = desired["name"]
        live = self.get(lambda: self._group.get(name))
        if live is None:
            raise MlplatError(f"datastore {name} does not exist any more", hint="run mlplat refresh, then apply")
        made = self._group.create_or_update(self._entity(desired, {**(live.tags or {}), **self.tags(ctx.address)}))
        return self._outputs(made)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        name = id.rsplit("/", 1)[-1]
        unless_missing(lambda: self._group.delete(name))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]
        found = self.find_named(name, ctx, lambda: self._group.get(name), lambda d: d.tags)
        return Created(found.id, self._outputs(found)) if found is not None else None
