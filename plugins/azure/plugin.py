"""Entry point of the azure plugin (group `mlplat.plugins`). Imports no Azure SDK.

It contributes only the Azure rows of the accelerator catalog (`catalog.csv` next to this file: VM sizes and whether
Azure ML managed online endpoints sell them). The azure target itself (`mlplat_targets`) comes with its own issue.
"""

from __future__ import annotations

from pathlib import Path

from provisioner.catalog import CatalogFile
from provisioner.plugins import hookimpl


@hookimpl
def mlplat_catalog() -> list[CatalogFile]:
    return [CatalogFile("azure", Path(__file__).with_name("catalog.csv"))]
