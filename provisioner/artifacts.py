"""Model artifacts declared in the registry: where the file is and what it holds (shared by every target)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.errors import MlplatError

if TYPE_CHECKING:  # the spec loader imports this module: no import of provisioner.spec at run time
    from provisioner.spec.model import ModelVersion

ARTIFACT_ROOTS_HINT = "move the file under the stack directory or list its directory under registry.artifact_roots"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(artifact: str) -> bool:
    """s3://..., gs://..., https://...: not a file on this machine (and not confined to the stack directory)."""
    return bool(_URI.match(artifact))


def confinement_problem(artifact: str, stack_dir: Path, roots: Sequence[str] = ()) -> str | None:
    """Why a path artifact may not be read, or None when it may: after following symlinks it must lie under the
    stack directory or under one of `roots` (absolute, or relative to the stack directory). URIs are not checked."""
    if is_uri(artifact):
        return None
    try:
        resolved = (stack_dir / artifact).resolve()
        allowed = [(stack_dir / root).resolve() for root in ("", *roots)]
    except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a NUL character
        return f"artifact path {artifact!r} cannot be resolved ({err})"
    if any(resolved.is_relative_to(root) for root in allowed):
        return None
    where = f"the stack directory {allowed[0]}"
    if roots:
        where += " and every registry.artifact_roots entry"
    return f"artifact {artifact!r} resolves to {resolved}, outside {where}"


def artifact_path(model: ModelVersion, stack_dir: Path, roots: Sequence[str] = ()) -> Path:
    """The artifact's file (relative paths are relative to the stack file); a clear error when it is missing or
    lies outside the stack directory and `roots` (registry.artifact_roots; checked again here, after the loader,
    in case a symlink changed since)."""
    source = Path(model.artifact)
    if not source.is_absolute():
        source = stack_dir / source
    problem = confinement_problem(model.artifact, stack_dir, roots)
    if problem:
        raise MlplatError(f"model {model.ref}: {problem}", hint=ARTIFACT_ROOTS_HINT)
    if not source.is_file():
        raise MlplatError(f"model {model.ref}: artifact {model.artifact} not found (looked at {source})",
                          hint="artifact paths are relative to the stack file (in a module: to the module)")
    return source


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ArtifactStore:
    """A target's store of model artifacts copied from a registry on another target (`Target.artifact_store`).

    The core's copy step fetches an artifact through the store of the registry's target and puts it here;
    both sides check the sha256. Implementations talk to their storage (a directory, an S3 prefix) and must be
    safe to call from several threads. Keys are `<model>/<version>/<file name>`.
    """

    #: URI schemes `fetch` reads ("file" covers plain absolute paths too)
    schemes: frozenset[str] = frozenset()

    def put(self, source: Path, key: str, sha256: str) -> str:
        """Store the file `source` under `key` (idempotent: an existing object with this sha256 is kept);
        return its URI, the form this target's serving reads."""
        raise NotImplementedError

    def fetch(self, uri: str, dest: Path) -> None:
        """Write the artifact at `uri` (one of `schemes`) to the local file `dest`."""
        raise NotImplementedError

    def sha256(self, uri: str) -> str | None:
        """The sha256 of the artifact at `uri` as the store records or computes it; None when it is absent."""
        raise NotImplementedError

    def delete(self, uri: str) -> None:
        """Remove the artifact at `uri`; no error when it is already gone."""
        raise NotImplementedError

    def reads(self, uri: str) -> bool:
        """Whether `fetch` can read `uri`."""
        scheme = uri.split("://", 1)[0].lower() if is_uri(uri) else "file"
        return scheme in self.schemes
