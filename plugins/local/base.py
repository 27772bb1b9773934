"""What every local resource provider shares: the target, the owner marker that says which address a directory
belongs to, and the mechanics of a directory resource (a volume, the registry, an image repository).

Import (`mlplat import ADDRESS ID`): the id of a directory resource is its absolute path, as `mlplat state show`
prints it. An adopted directory is checked to be of the kind (`kind_problem`), then marked as the address's like
one mlplat made — from then on it is mlplat's: `destroy` deletes it, content and all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import MlplatError, ProviderError
from provisioner.provider import Created, Observed, ResourceProvider

if TYPE_CHECKING:
    from mlplat_plugins.local.target import LocalTarget
    from provisioner.operations import StepContext

MARKER = ".mlplat-owner"


class LocalProvider(ResourceProvider):
    def __init__(self, target: LocalTarget) -> None:
        self.target = target

    def import_path(self, address: str, id: str) -> Path:
        """The path an import id names: absolute and normalized (the state compares ids as text), no symbolic
        link, and neither this target's root, the stack's directory nor a folder holding them (destroy would
        delete the stack)."""
        if not os.path.isabs(id) or os.path.normpath(id) != id:
            raise ProviderError(address, f"{id!r} is not an absolute, normalized path",
                                hint=f"pass the path as mlplat records it, e.g. {os.path.abspath(id)}")
        path = Path(id)
        if path.is_symlink():
            raise ProviderError(address, f"{id} is a symbolic link",
                                hint=f"import what it points to: {os.path.realpath(id)}")
        with_us = {"the local target's root": self.target.root, "the stack's directory": self.target.context.stack_dir}
        for what, ours in with_us.items():
            if Path(os.path.realpath(ours)).is_relative_to(os.path.realpath(path)):
                raise ProviderError(address, f"{id} holds {what} ({ours}); it cannot be adopted as a resource",
                                    hint="destroy would delete it, the stack with it: import a folder of its own")
        return path


def claim(path: Path, address: str) -> None:
    """Create `path` and mark it as `address`'s, refusing a directory that belongs to something else.

    The marker is written atomically (a kill leaves the old content or the new, never a torn file); an empty
    or unreadable marker is what a crash on an older version left half-written, so it is adopted."""
    from mlplat_plugins.local.runtime.processes import write_text_atomic

    path.mkdir(parents=True, exist_ok=True)
    owner = owner_of(path)
    if owner is not None and owner != address:
        raise MlplatError(f"{path} already belongs to {owner}",
                          hint="another resource (or another stack sharing targets.local.root) uses this "
                               "directory; give this stack its own root, or remove the directory if it is unused")
    if owner is None:
        write_text_atomic(path / MARKER, address + "\n")


def owner_of(path: Path) -> str | None:
    """The address a directory's marker names; None without a marker or with an empty or unreadable one."""
    try:
        owner = (path / MARKER).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    return owner or None


def owned_by(path: Path, address: str) -> bool:
    return owner_of(path) == address


def entries(path: Path) -> list[Path]:
    """What a directory holds, less mlplat's own bookkeeping (the owner marker, files a kill left half-written)."""
    from mlplat_plugins.local.runtime.processes import is_partial_write

    return sorted(p for p in path.iterdir() if p.name != MARKER and not is_partial_write(p.name))


class OwnedDirectoryProvider(LocalProvider):
    """A directory this target owns (its marker names the address). `path` is the id; read sees it exist."""

    force_new = frozenset({"path"})
    #: what `mlplat import` calls this kind in its messages
    noun = "directory"

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        path = Path(inputs["path"])
        claim(path, address)
        return Created(str(path), {"path": str(path)})

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        path = Path(inputs["path"])
        return Created(str(path), {"path": str(path)}) if owned_by(path, address) else None

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        return Observed(dict(inputs), {"path": id}) if Path(id).is_dir() else None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return {"path": id}

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        path = Path(id)
        if path.is_dir() and (path / MARKER).exists():
            shutil.rmtree(path)

    def kind_problem(self, path: Path) -> str | None:
        """Why the existing directory `path` is not an object of this kind (None: it is). Default: any is."""
        return None

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """An existing directory at the absolute path `id`, if it is of this kind and no other address's; marked
        as `address`'s. Its path is what is recorded, so a folder elsewhere than the stack file puts it shows as
        a `path` change (a replacement) in the next plan."""
        path = self.import_path(address, id)
        if not path.is_dir():
            if path.exists():
                raise ProviderError(address, f"{id} is not a directory, so not a local {self.noun}")
            return None
        owner = owner_of(path)
        if owner is not None and owner != address:
            raise ProviderError(address, f"{id} belongs to {owner} (its {MARKER} says so)",
                                hint="one directory, one address: import it as that address, or pick another")
        problem = self.kind_problem(path)
        if problem is not None:
            raise ProviderError(address, f"{id} is not a local {self.noun}: {problem}")
        claim(path, address)
        return Observed({**inputs, "path": id}, {"path": id})
