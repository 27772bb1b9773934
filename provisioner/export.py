"""Export formats: `mlplat export --format NAME` writes the stack's lowered resources in another tool's terms.

The core offers `json` (the resource graph as mlplat lowers it); plugins add formats through the
`mlplat_exporters` hook (e.g. the on-prem plugin's Pulumi program).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from provisioner.errors import MlplatError

if TYPE_CHECKING:
    from provisioner.api import Stack


class Files(dict[str, str]):
    """A directory export: relative path → text. `notes` (e.g. what was left out) are printed on stderr."""

    def __init__(self, files: dict[str, str] | None = None, notes: list[str] | None = None) -> None:
        super().__init__(files or {})
        self.notes = list(notes or [])


@dataclass(frozen=True)
class Exporter:
    """One export format: `export(stack)` returns the exported text, or a directory as `dict[str, str]` (relative
    path → text; `Files` adds notes) that `mlplat export -o DIR` writes (the stack is validated and lowered)."""

    name: str
    description: str
    export: Callable[[Stack], str | dict[str, str]]


def write_directory(files: dict[str, str], directory: Path) -> list[Path]:
    """Write a directory export under `directory` (made if missing); each path must stay inside it."""
    if directory.exists() and not directory.is_dir():
        raise MlplatError(f"{directory} is a file: a directory export needs a directory",
                          hint="pass -o with a new or existing directory")
    root = directory.resolve()
    written: list[Path] = []
    for relative, text in files.items():
        target = (root / relative).resolve()
        if PurePosixPath(relative).is_absolute() or not target.is_relative_to(root):
            raise MlplatError(f"export file {relative!r} is outside the output directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        written.append(target)
    return written


def _json(stack: Stack) -> str:
    from provisioner.graph import to_json

    resources, outputs = stack.lower()
    return json.dumps({
        "stack": stack.name,
        "resources": [{"address": r.address, "kind": r.kind, "target": r.target, "inputs": to_json(r.inputs),
                       "depends_on": sorted(r.edges)} for r in resources.values()],
        "outputs": to_json(outputs),
    }, indent=2, sort_keys=True) + "\n"


BUILT_IN = (Exporter("json", "the lowered resources, their inputs and edges, and the stack's outputs", _json),)


def exporters() -> dict[str, Exporter]:
    """Every export format by name: the core's, then each plugin's. Two claiming one name is an error."""
    from provisioner import plugins

    found = {e.name: e for e in BUILT_IN}
    owner = dict.fromkeys(found, "mlplat (built in)")
    for plugin, exporter in plugins.contributions("mlplat_exporters"):
        if exporter.name in found:
            raise plugins.PluginError(f"two plugins provide export format {exporter.name!r}: "
                                      f"{owner[exporter.name]} and {plugin}")
        found[exporter.name], owner[exporter.name] = exporter, plugin
    return found


def exporter(name: str) -> Exporter:
    known = exporters()
    if name not in known:
        raise MlplatError(f"unknown export format {name!r} (formats: {', '.join(sorted(known))})",
                          hint="`mlplat export --list` describes each format")
    return known[name]
