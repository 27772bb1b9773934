"""Plugin system: every hook is declared here once; plugins are found through the `mlplat.plugins` entry points.

Built-in targets register exactly as a third party's would. `MLPLAT_PLUGINS=module[,module]` loads extra plugin
modules (useful for development and tests).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import pluggy

from provisioner.errors import MlplatError

if TYPE_CHECKING:
    from provisioner.catalog import CatalogFile
    from provisioner.events import Event
    from provisioner.export import Exporter
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

    @hookspec
    def mlplat_catalog(self) -> list[CatalogFile]:
        """Called once, the first time the accelerator catalog is read. Return the catalog files this plugin
        contributes (one per target type: its instance types per accelerator and GPU count). The core checks
        every row (known accelerator, GPU count consistent) and owns the lookups."""

    @hookspec
    def mlplat_exporters(self) -> list[Exporter]:
        """Return the export formats this plugin adds to `mlplat export --format NAME`."""

    @hookspec(firstresult=True)
    def mlplat_state_key(self, stack: str, lineage: str) -> bytes | None:
        """A KMS-style key provider: the 32-byte key that seals this state's secrets, or None to defer
        (then the key is derived from $MLPLAT_STATE_PASSPHRASE)."""


class PluginError(MlplatError):
    """An installed plugin is broken or conflicts with another; the message names the plugin(s)."""


class Finding:
    """A policy finding from `mlplat_validate`."""

    def __init__(self, message: str, *, severity: str = "error", component: str | None = None) -> None:
        self.message, self.severity, self.component = message, severity, component

    def __repr__(self) -> str:
        return f"Finding({self.severity}: {self.message})"


@lru_cache(maxsize=1)
def manager() -> pluggy.PluginManager:
    """The plugin manager, built once: entry points, then $MLPLAT_PLUGINS; a hook implementation that matches no
    specification (a misspelt hook name) is an error naming its plugin, not a silently ignored function."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(Hooks)
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        for name in filter(None, (m.strip() for m in os.environ.get("MLPLAT_PLUGINS", "").split(","))):
            module = importlib.import_module(name)
            if pm.get_plugin(name) is None and not pm.is_registered(module):  # an entry point may have it already
                pm.register(module, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        raise PluginError(f"plugin {_plugin_name(pm, err.plugin)}: {err}",
                          hint="each @hookimpl must be named after a hook in provisioner/plugins.py (Hooks)") from None
    return pm


def reset() -> None:
    """Forget the plugins found so far (the manager and the catalog rows they gave), so the next use loads them
    again: for tests and tools that change $MLPLAT_PLUGINS in a running process."""
    from provisioner import catalog

    manager.cache_clear()
    catalog.forget_plugin_rows()


def _plugin_name(pm: pluggy.PluginManager, plugin: object) -> str:
    return pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))


def contributions(hook: str) -> Iterator[tuple[str, Any]]:
    """(plugin name, item) for every item each plugin's implementation of `hook` returns (mlplat_targets,
    mlplat_catalog, mlplat_exporters): what a caller needs to name both plugins when two claim one name."""
    pm = manager()
    for impl in getattr(pm.hook, hook).get_hookimpls():
        plugin = _plugin_name(pm, impl.plugin)
        for item in impl.function() or ():
            yield plugin, item


def target_types() -> dict[str, type[Target]]:
    """Every installed target type by name. Two plugins claiming one name is an error naming both."""
    found: dict[str, type[Target]] = {}
    owner: dict[str, str] = {}
    for plugin, target in contributions("mlplat_targets"):
        if target.name in found and found[target.name] is not target:
            raise PluginError(f"two plugins provide target type {target.name!r}: {owner[target.name]} "
                              f"({found[target.name].__module__}) and {plugin} ({target.__module__})",
                              hint="uninstall one of them, or drop one from $MLPLAT_PLUGINS")
        found[target.name], owner[target.name] = target, plugin
    return found


def sdk_status(target: type[Target]) -> dict[str, Any]:
    """Whether a target type's SDK is installed (found, not imported), with versions and the install line."""
    from importlib import metadata

    missing = target.missing_sdk()
    versions: dict[str, str | None] = {}
    if target.sdk:
        dists = metadata.packages_distributions()
        for module in target.sdk:
            names = _owners(module, dists.get(module.split(".")[0], []))
            versions[module] = None if module in missing else (metadata.version(names[0]) if names else "installed")
    return {"installed": not missing, "modules": versions, "install": target.install_line(missing) if missing else None}


def _owners(module: str, names: list[str]) -> list[str]:
    """The distributions among `names` that ship `module`: a namespace package (`google.cloud.…`) is shared by many,
    so the one whose files hold the module's own package is put first."""
    from importlib import metadata

    if len(names) < 2 or "." not in module:
        return names
    package = module.replace(".", "/") + "/"
    for name in names:
        if any(str(f).startswith(package) for f in metadata.distribution(name).files or ()):
            return [name]
    return names


def plugin_listing() -> list[dict[str, Any]]:
    """Each plugin, its distribution and the target types it provides (with their SDK status)."""
    pm = manager()
    out = []
    for name, plugin in pm.list_name_plugin():
        targets = []
        impl = getattr(plugin, "mlplat_targets", None)
        if impl is not None:
            targets = [{"name": t.name, "description": t.description, "sdk": sdk_status(t)} for t in impl() or ()]
        catalog = getattr(plugin, "mlplat_catalog", None)
        exporters = getattr(plugin, "mlplat_exporters", None)
        dist = next((d for p, d in pm.list_plugin_distinfo() if p is plugin), None)
        out.append({
            "name": name,
            "module": getattr(plugin, "__name__", repr(plugin)),
            "distribution": f"{dist.project_name} {dist.version}" if dist else None,
            "targets": targets,
            "catalog": sorted(f.target for f in catalog() or ()) if catalog is not None else [],
            "export_formats": sorted(e.name for e in exporters() or ()) if exporters is not None else [],
        })
    return out
