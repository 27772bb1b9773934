"""Plugin system: every hook is declared here once; plugins are found through the `mlplat.plugins` entry points.

Built-in targets register exactly as a third party's would. `MLPLAT_PLUGINS=module[,module]` loads extra plugin
modules (useful for development and tests).
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from provisioner.events import Event
    from provisioner.graph import Resource
    from provisioner.spec.model import Platform
    from provisioner.target import Target

PROJECT = "mlplat"
ENTRY_POINT_GROUP = "mlplat.plugins"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Hooks:
    """The hook specifications."""

    @hookspec
    def mlplat_targets(self) -> list[type[Target]]:
        """Called once when the plugin manager is built. Return the `Target` subclasses this plugin provides."""

    @hookspec
    def mlplat_validate(self, platform: Platform) -> list[Finding]:
        """Called by validate/preview/apply after the stack file is typed. Return policy findings;
        any finding with severity "error" stops the command."""

    @hookspec
    def mlplat_on_event(self, event: Event) -> None:
        """Called for every engine event during plan/apply (step started/done/failed/retry, progress).
        Must be quick: it runs on the engine's worker threads."""

    @hookspec
    def mlplat_estimate_cost(self, resource: Resource) -> float | None:
        """Called during preview for every desired resource. Return its on-demand cost in USD/hour or None."""

    @hookspec(firstresult=True)
    def mlplat_state_key(self, stack: str, lineage: str) -> bytes | None:
        """A KMS-style key provider: the 32-byte key that seals this state's secrets, or None to defer
        (then the key is derived from $MLPLAT_STATE_PASSPHRASE)."""


class Finding:
    """A policy finding from `mlplat_validate`."""

    def __init__(self, message: str, *, severity: str = "error", component: str | None = None) -> None:
        self.message, self.severity, self.component = message, severity, component

    def __repr__(self) -> str:
        return f"Finding({self.severity}: {self.message})"


@lru_cache(maxsize=1)
def manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(Hooks)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for name in filter(None, (m.strip() for m in os.environ.get("MLPLAT_PLUGINS", "").split(","))):
        if pm.get_plugin(name) is None:
            pm.register(importlib.import_module(name), name=name)
    return pm


def target_types() -> dict[str, type[Target]]:
    found: dict[str, type[Target]] = {}
    for batch in manager().hook.mlplat_targets():
        for target in batch or ():
            found.setdefault(target.name, target)
    return found


def plugin_listing() -> list[dict[str, Any]]:
    pm = manager()
    out = []
    for name, plugin in pm.list_name_plugin():
        targets = []
        impl = getattr(plugin, "mlplat_targets", None)
        if impl is not None:
            targets = [t.name for t in impl() or ()]
        dist = next((d for p, d in pm.list_plugin_distinfo() if p is plugin), None)
        out.append({
            "name": name,
            "module": getattr(plugin, "__name__", repr(plugin)),
            "distribution": f"{dist.project_name} {dist.version}" if dist else None,
            "targets": targets,
        })
    return out
