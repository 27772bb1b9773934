"""The local target's artifact store: model artifacts copied from a registry on another target, kept as files
<root>/artifacts/<model>/<version>/<file name>. A file's URI is its absolute path, what a local model server
reads; the core records it as the id of the copy (`core.artifact_copy`), so the target's sweep keeps it, and
removes a file no record names (a copy a kill left unrecorded)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

from provisioner.artifacts import ArtifactStore, is_uri, sha256_file
from provisioner.errors import MlplatError


class LocalArtifactStore(ArtifactStore):
    """Files under `base` (absolute). Safe from several threads: every write goes to a file of its own
    (`processes.partial_write_name`) renamed into place."""

    schemes = frozenset({"file"})

    def __init__(self, base: Path) -> None:
        self.base = Path(os.path.abspath(base))

    def path_of_key(self, key: str) -> Path:
        """Where `key` (`<model>/<version>/<file name>`, relative, no `..`) is stored."""
        parts = key.split("/") if isinstance(key, str) else []
        if not parts or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            raise MlplatError(f"artifact key {key!r} is not a relative path of plain names (<model>/<version>/<file>)")
        return self.base.joinpath(*parts)

    @staticmethod
    def path_of(uri: str) -> Path:
        """The file a plain absolute path or a file:// URI names."""
        if uri.lower().startswith("file://"):
            parts = urlsplit(uri)
            if parts.netloc not in ("", "localhost"):
                raise MlplatError(f"{uri} names a file on another host ({parts.netloc})")
            path = unquote(parts.path)
        elif is_uri(uri):
            raise MlplatError(f"the local artifact store reads file paths and file:// URIs, not {uri}")
        else:
            path = uri
        if not os.path.isabs(path):
            raise MlplatError(f"artifact {uri!r} is not an absolute path")
        return Path(os.path.normpath(path))

    def put(self, source: Path, key: str, sha256: str) -> str:
        dest = self.path_of_key(key)
        if dest.is_file() and sha256_file(dest) == sha256:
            return str(dest)  # already there (a retried or resumed copy)
        try:
            _copy(Path(source), dest, sha256)
        except MlplatError:
            self._prune(dest)
            raise
        return str(dest)

    def fetch(self, uri: str, dest: Path) -> None:
        _copy(self.path_of(uri), Path(dest), None)

    def sha256(self, uri: str) -> str | None:
        path = self.path_of(uri)
        return sha256_file(path) if path.is_file() else None

    def delete(self, uri: str) -> None:
        """Remove the file, then the folders it leaves empty up to the store's own; only files in the store."""
        path = self.path_of(uri)
        if not path.is_relative_to(self.base) or path == self.base:
            raise MlplatError(f"{path} is not in the local artifact store ({self.base}); it is not deleted")
        path.unlink(missing_ok=True)
        self._prune(path)

    def _prune(self, path: Path) -> None:
        """Remove the folders above `path` that are empty, up to the store's own."""
        for parent in path.parents:
            if parent == self.base or not parent.is_relative_to(self.base):
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (another version), or gone
                break


def _copy(source: Path, dest: Path, sha256: str | None) -> None:
    """Copy `source` to `dest` atomically; with `sha256`, the copy must have that digest (else nothing is left)."""
    from mlplat_plugins.local.runtime.processes import partial_write_name

    if not source.is_file():
        raise MlplatError(f"artifact {source} is missing")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_write_name(dest)
    try:
        shutil.copyfile(source, tmp)
        if sha256 is not None:
            got = sha256_file(tmp)
            if got != sha256:
                raise MlplatError(f"the copy of {source} has sha256 {got}, not the expected {sha256}",
                                  hint="the artifact changed since its registry recorded it: apply again to "
                                       "record the new one")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except OSError as err:
        raise MlplatError(f"cannot copy {source} to {dest}: {err}") from None
    finally:
        tmp.unlink(missing_ok=True)
