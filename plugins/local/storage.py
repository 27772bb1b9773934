"""Storage of the local target: a volume is a directory on this machine (`local.directory`).

Import id: the directory's absolute path. Any directory is a volume (its content is the user's data); one that
another address's marker names is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat_plugins.local.base import OwnedDirectoryProvider, entries, owner_of
from provisioner.errors import MlplatError
from provisioner.provider import Created

if TYPE_CHECKING:
    from provisioner.operations import StepContext


class DirectoryProvider(OwnedDirectoryProvider):
    """NAS on the local machine: a directory (mount_path is advisory: containers would mount `path` there)."""

    noun = "volume directory"

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        """With `adopt_existing: false` (a raw `local.directory`, which may name any path), refuses a directory
        that already holds files mlplat did not make: destroy would delete them. A volume's inputs have no such
        key: its directory is under the target's root, and is taken over."""
        path = Path(inputs["path"])
        if not inputs.get("adopt_existing", True) and path.is_dir() and owner_of(path) is None and entries(path):
            raise MlplatError(f"{path} already exists and holds files mlplat did not make for {address}",
                              hint=f"adopt it with `mlplat import {address} {path}` or adopt_existing: true "
                                   "(destroy then deletes it, content and all), or pick a new path")
        return super().create(address, inputs, ctx)
