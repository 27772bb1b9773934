"""The registry of the local target: a directory registry (`local.registry`), image repositories in it
(`local.image_repository`) and model versions copied into it (`local.model_version`).

Layout: <registry>/<model>/<version>/{meta.json, model.<ext>} and <registry>/images/<image>/ (an OCI image
layout, as `skopeo copy ... oci:<path>` writes it).

Import ids: the registry's and an image repository's absolute directory path; a model version's absolute
<registry>/<model>/<version> directory. Each is checked against that layout first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat_plugins.local.base import LocalProvider, OwnedDirectoryProvider, entries
from provisioner.errors import MlplatError, ProviderError
from provisioner.provider import Created, Observed

if TYPE_CHECKING:
    from provisioner.operations import StepContext

IMAGES = "images"
META = "meta.json"
#: what meta.json must hold for `read` to see a model version
META_KEYS = ("name", "version", "framework", "source", "artifact")
LAYOUT = "a registry holds <model>/<version>/meta.json folders and images/<image>/"


class RegistryProvider(OwnedDirectoryProvider):
    """A directory registry: <path>/<model>/<version>/ holding the artifact and its metadata."""

    noun = "registry"

    def kind_problem(self, path: Path) -> str | None:
        """An empty directory is an empty registry; anything else must follow the layout."""
        for entry in entries(path):
            if not entry.is_dir():
                return f"it holds the file {entry.name} ({LAYOUT})"
            if entry.name == IMAGES:
                stray = next((e.name for e in entries(entry) if not e.is_dir()), None)
                if stray is not None:
                    return f"it holds the file {IMAGES}/{stray} ({LAYOUT})"
                continue
            for version in entries(entry):
                if not version.is_dir():
                    return f"it holds the file {entry.name}/{version.name} where a <version> folder goes ({LAYOUT})"
                if not (version / META).is_file():
                    return f"{entry.name}/{version.name} is not a model version, it has no {META} ({LAYOUT})"
        return None


class ImageRepositoryProvider(OwnedDirectoryProvider):
    """An image repository in the directory registry: a folder for OCI image layouts (`skopeo copy ... oci:`)."""

    noun = "image repository"

    def kind_problem(self, path: Path) -> str | None:
        """Empty (no image pushed yet) or an OCI image layout (its `oci-layout` file)."""
        held = entries(path)
        if held and not (path / "oci-layout").is_file():
            return (f"it holds {', '.join(e.name for e in held[:3])}{', …' if len(held) > 3 else ''} and no "
                    "oci-layout file (an image repository is an OCI image layout folder, or an empty one)")
        return None


class ModelVersionProvider(LocalProvider):
    """A model version copied into the registry; the digest is re-computed on read, so edits show as drift."""

    force_new = frozenset({"registry", "name", "version"})

    def _dir(self, inputs: dict[str, Any]) -> Path:
        return Path(inputs["registry"]) / inputs["name"] / inputs["version"]

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        return self._write(inputs)

    def _write(self, inputs: dict[str, Any]) -> Created:
        source = Path(inputs["source"])
        if not source.is_file():
            raise MlplatError(f"artifact {source} is missing")
        directory = self._dir(inputs)
        directory.mkdir(parents=True, exist_ok=True)
        artifact = directory / ("model" + (source.suffix or ".bin"))
        tmp = artifact.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, artifact)
        meta = {k: inputs[k] for k in ("name", "version", "sha256", "framework")} | {
            "source": str(source),
            "artifact": artifact.name,
        }
        from mlplat_plugins.local.runtime.processes import write_json_atomic

        write_json_atomic(directory / META, meta)
        return Created(str(directory), {"uri": str(artifact), "digest": f"sha256:{inputs['sha256']}"})

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        directory = self._dir(inputs)
        observed = self.read(str(directory), inputs)
        return Created(str(directory), observed.outputs) if observed else None

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        try:
            meta = json.loads((Path(id) / META).read_text())
            artifact = Path(id) / meta["artifact"]
            digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
        except (OSError, ValueError, KeyError):
            return None
        current = {
            **inputs,
            "name": meta["name"],
            "version": meta["version"],
            "sha256": digest,
            "framework": meta["framework"],
            "source": meta["source"],
        }
        return Observed(current, {"uri": str(artifact), "digest": f"sha256:{digest}"})

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return self._write(desired).outputs

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        path = Path(id)
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):  # the model's folder goes with its last version (racing siblings ok)
            path.parent.rmdir()

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """The version folder `id` (<registry>/<model>/<version>, absolute), if its meta.json describes it and
        its artifact is there; what `read` sees, with the registry it is in (so a version in another registry
        than the stack's shows as a `registry` change: a replacement)."""
        path = self.import_path(address, id)
        if not path.is_dir():
            if path.exists():
                raise ProviderError(address, f"{id} is not a directory, so not a local model version")
            return None

        def refuse(problem: str) -> ProviderError:
            return ProviderError(address, f"{id} is not a local model version: {problem}",
                                 hint="a model version is a <registry>/<model>/<version> folder holding meta.json "
                                      f"({', '.join(META_KEYS)}) and the artifact file it names")

        try:
            meta = json.loads((path / META).read_text())
        except FileNotFoundError:
            raise refuse(f"it has no {META}") from None
        except (OSError, ValueError) as err:
            raise refuse(f"its {META} cannot be read: {err}") from None
        if not isinstance(meta, dict):
            raise refuse(f"its {META} is not a JSON object")
        missing = [k for k in META_KEYS if k not in meta]
        if missing:
            raise refuse(f"its {META} lacks {', '.join(missing)}")
        if (str(meta["name"]), str(meta["version"])) != (path.parent.name, path.name):
            raise refuse(f"its {META} describes {meta['name']}:{meta['version']}, the folder is "
                         f"{path.parent.name}/{path.name}")
        if not (path / str(meta["artifact"])).is_file():
            raise refuse(f"the artifact its {META} names ({meta['artifact']}) is missing")
        return self.read(id, {**inputs, "registry": str(path.parent.parent)})
