"""Export formats: `mlplat export --format NAME` writes the stack's lowered resources in another tool's terms.

The core offers `json` (the resource graph as mlplat lowers it); plugins add formats through the
`mlplat_exporters` hook (e.g. the on-prem plugin's Pulumi program).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from provisioner.errors import MlplatError

if TYPE_CHECKING:
    from provisioner.api import Stack


@dataclass(frozen=True)
class Exporter:
    """One export format: `export(stack)` returns the exported text (the stack is validated and lowered)."""

    name: str
    description: str
    export: Callable[[Stack], str]


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
