"""Toy registry: model versions, each an uploaded artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provisioner.artifacts import sha256_file
from provisioner.errors import MlplatError
from toy_plugin.base import ToyProvider


class Model(ToyProvider):
    collection = "model"
    force_new = frozenset({"name", "space", "artifact", "sha256", "framework"})

    def upload(self, inputs: dict[str, Any]) -> str | None:
        path = Path(inputs["artifact"])
        if not path.is_absolute():
            path = self.target.context.stack_dir / path
        if sha256_file(path) != inputs["sha256"]:
            raise MlplatError(f"artifact {inputs['artifact']} changed since the plan was made", hint="plan again")
        return str(path)

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"uri": obj["uri"]}
