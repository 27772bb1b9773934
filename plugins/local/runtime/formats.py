"""Model formats the local model server loads, by the registry's `framework:` name.

    predictor = load(Path("models/iris-v1.json"), "mlplat-linear")
    predictor.model_id          # "iris:1" where the artifact names itself, else None
    predictor.predict([[5.1, 3.5, 1.4, 0.2]])  # -> list of {"label": ..., "probabilities": {...}} (or values)

`predict` raises ModelError (a ValueError) on bad input; `load` raises ModelError naming the artifact on a bad
artifact, and FormatUnavailable (with the pip line) when the format's runtime is not installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .model import ModelError
from .model import load as load_linear

#: framework name → the extra that installs its runtime (None: built in)
FORMATS: dict[str, str | None] = {"mlplat-linear": None}


class FormatUnavailable(ModelError):
    """The format's runtime is not installed."""


class Predictor(Protocol):
    model_id: str | None

    def predict(self, instances: Sequence[Any]) -> list[Any]: ...


def load(path: Path, framework: str) -> Predictor:
    if framework == "mlplat-linear":
        return load_linear(path)
    raise ModelError(f"unknown model framework {framework!r} (known: {', '.join(sorted(FORMATS))})")
