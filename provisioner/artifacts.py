"""Model artifacts declared in the registry: where the file is and what it holds (shared by every target)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from provisioner.errors import MlplatError
from provisioner.spec.model import ModelVersion


def artifact_path(model: ModelVersion, stack_dir: Path) -> Path:
    """The artifact's file (relative paths are relative to the stack file); a clear error when it is missing."""
    source = Path(model.artifact)
    if not source.is_absolute():
        source = stack_dir / source
    if not source.is_file():
        raise MlplatError(f"model {model.ref}: artifact {model.artifact} not found (looked at {source})",
                          hint="artifact paths are relative to the stack file")
    return source


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
