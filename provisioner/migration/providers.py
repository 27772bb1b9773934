"""The core's own resource kinds: `core.migration` (where a move stands: a record only) and
`core.artifact_copy` (a model artifact copied to a store the serving target reads, sha256 checked)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.artifacts import sha256_file
from provisioner.errors import MlplatError
from provisioner.provider import Created, Observed, ResourceProvider

if TYPE_CHECKING:
    from provisioner.api import Stack
    from provisioner.artifacts import ArtifactStore
    from provisioner.operations import StepContext


class MigrationRecordProvider(ResourceProvider):
    """A migration record lives in the state only: nothing in a cloud to read, change or delete."""

    importable = False

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        return Created(address.split(".", 1)[1])

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        return Observed(dict(inputs))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {}

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        return None


class ArtifactCopyProvider(ResourceProvider):
    """A registry's artifact copied into the store of the target serving it (`Target.artifact_store`).

    Inputs: source (the registry's URI of the artifact), sha256 (what the registry recorded), key
    (`<model>/<version>/<file>`), source_target (the registry's target). The id is the copy's URI. The copy is
    fetched through the source target's store (or read directly when the source is a local file), its sha256
    checked before it is stored and again as the destination store reports it."""

    force_new = frozenset({"source", "sha256", "key", "source_target"})
    replace_mode = "create_before_destroy"
    importable = False

    def __init__(self, stack: Stack, target: str) -> None:
        self.stack, self.target = stack, target

    def _store(self, target: str) -> ArtifactStore | None:
        return self.stack.targets[target].artifact_store() if target in self.stack.targets else None

    def _destination(self) -> ArtifactStore:
        store = self._store(self.target)
        if store is None:
            raise MlplatError(f"target {self.target!r} has no artifact store to copy model artifacts into")
        return store

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        dest = self._destination()
        source, sha = str(inputs["source"]), str(inputs["sha256"])
        with tempfile.TemporaryDirectory(prefix="mlplat-copy-") as tmp:
            local = Path(tmp) / Path(inputs["key"]).name
            store = self._store(str(inputs["source_target"]))
            if store is not None and store.reads(source):
                store.fetch(source, local)
            elif os.path.isabs(source) and Path(source).is_file():
                local.write_bytes(Path(source).read_bytes())
            else:
                raise MlplatError(f"{address}: cannot read {source} (target {inputs['source_target']!r} has no "
                                  "store that reads it)")
            got = sha256_file(local)
            if got != sha:
                raise MlplatError(f"{address}: the artifact at {source} has sha256 {got}, the registry recorded "
                                  f"{sha}", hint="the registry's copy changed since it was published: apply to "
                                                 "publish it again")
            uri = dest.put(local, str(inputs["key"]), sha)
        stored = dest.sha256(uri)
        if stored != sha:
            raise MlplatError(f"{address}: the copy at {uri} has sha256 {stored}, expected {sha}")
        return Created(uri, {"uri": uri, "sha256": stored})

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        stored = self._destination().sha256(id)
        if stored is None:
            return None
        return Observed({**inputs, "sha256": stored}, {"uri": id, "sha256": stored})

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"uri": id, "sha256": desired["sha256"]}

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        self._destination().delete(id)
