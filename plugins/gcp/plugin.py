"""Entry point of the gcp plugin (group `mlplat.plugins`). Imports no Google Cloud SDK.

It contributes only the GCP rows of the accelerator catalog (`catalog.csv` next to this file: Compute Engine machine
types, the Vertex AI `acceleratorType` of their GPUs, and whether Vertex AI prediction serves on them). The gcp target
itself (`mlplat_targets`) comes with its own issue.
"""

from __future__ import annotations

from pathlib import Path

from provisioner.catalog import CatalogFile
from provisioner.plugins import hookimpl


@hookimpl
def mlplat_catalog() -> list[CatalogFile]:
    return [CatalogFile("gcp", Path(__file__).with_name("catalog.csv"))]
