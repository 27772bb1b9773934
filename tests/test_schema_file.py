"""The committed JSON Schema (for editors) is exactly what `mlplat schema` prints."""

from __future__ import annotations

import json

from conftest import REPO, run_mlplat


def test_committed_schema_matches_the_model() -> None:
    printed = json.loads(run_mlplat("schema", cwd=REPO).stdout)
    committed = json.loads((REPO / "schema" / "mlplat.schema.json").read_text())
    assert printed == committed, "regenerate it: mlplat schema > schema/mlplat.schema.json"
    assert {"apiVersion", "metadata", "serving", "clusters", "storage", "registry"} <= set(printed["properties"])
