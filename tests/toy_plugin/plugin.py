"""Entry point of the toy target (loaded through MLPLAT_PLUGINS=toy_plugin.plugin). Imports no toy SDK."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provisioner.catalog import CatalogFile
from provisioner.plugins import hookimpl


@hookimpl
def mlplat_targets() -> list[type]:
    from toy_plugin.target import ToyTarget

    return [ToyTarget]


@hookimpl
def mlplat_catalog() -> list[CatalogFile]:
    return [CatalogFile("toy", Path(__file__).with_name("catalog.csv"))]


@hookimpl
def mlplat_estimate_cost(resource: Any) -> float | None:
    if resource.kind != "toy.deployment":
        return None
    return 0.0  # the toy cloud is free
