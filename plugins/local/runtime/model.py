"""The ``mlplat-linear/v1`` model format: multinomial logistic regression stored as JSON.

Example artifact (extra keys such as ``description`` are ignored)::

    {"format": "mlplat-linear/v1", "name": "iris", "version": "1",
     "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
     "classes": ["setosa", "versicolor", "virginica"],
     "weights": [[...one per feature...], ...one row per class...],
     "bias": [...one per class...]}

Scores are ``weights @ x + bias``; probabilities are their softmax. Pure Python: artifacts are tiny and
the server must start fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "mlplat-linear/v1"


class ModelError(ValueError):
    """An invalid artifact or invalid prediction input."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.version}"

    def _vector(self, index: int, instance: Any) -> list[float]:
        """Accept a list of numbers in feature order, or a mapping keyed by feature name."""
        if isinstance(instance, Mapping):
            missing = [f for f in self.features if f not in instance]
            if missing:
                raise ModelError(f"instance {index}: missing feature(s) {', '.join(missing)}")
            values = [instance[f] for f in self.features]
        elif isinstance(instance, Sequence) and not isinstance(instance, (str, bytes)):
            values = list(instance)
            if len(values) != len(self.features):
                raise ModelError(
                    f"instance {index}: expected {len(self.features)} values "
                    f"({', '.join(self.features)}), got {len(values)}"
                )
        else:
            raise ModelError(f"instance {index}: expected a list of {len(self.features)} numbers")
        if not all(_is_number(v) for v in values):
            raise ModelError(f"instance {index}: all values must be finite numbers")
        return [float(v) for v in values]

    def predict(self, instances: Sequence[Sequence[float] | Mapping[str, float]]) -> list[dict[str, Any]]:
        """Return ``{"label", "probabilities"}`` per instance; ModelError (a ValueError) on bad input."""
        if isinstance(instances, (str, bytes)) or not isinstance(instances, Sequence):
            raise ModelError("instances must be a list")
        results = []
        for index, instance in enumerate(instances):
            x = self._vector(index, instance)
            scores = [
                sum(w * v for w, v in zip(row, x, strict=True)) + b
                for row, b in zip(self.weights, self.bias, strict=True)
            ]
            top = max(scores)
            exps = [math.exp(s - top) for s in scores]  # shifted for numerical stability
            total = sum(exps)
            probs = {c: round(e / total, 6) for c, e in zip(self.classes, exps, strict=True)}
            label = self.classes[scores.index(top)]
            results.append({"label": label, "probabilities": probs})
        return results


def _names(doc: Mapping[str, Any], key: str, minimum: int) -> tuple[str, ...]:
    value = doc.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ModelError(f"'{key}' must be a list of non-empty strings")
    if len(value) < minimum:
        raise ModelError(f"'{key}' needs at least {minimum} entries, got {len(value)}")
    if len(set(value)) != len(value):
        raise ModelError(f"'{key}' has duplicate entries")
    return tuple(value)


def _numbers(value: Any, what: str, length: int) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(_is_number(v) for v in value):
        raise ModelError(f"{what} must be a list of finite numbers")
    if len(value) != length:
        raise ModelError(f"{what} must have {length} entries, got {len(value)}")
    return tuple(float(v) for v in value)


def from_dict(doc: Any) -> Model:
    """Validate a parsed artifact; raises ModelError (a ValueError) naming the first problem."""
    if not isinstance(doc, dict):
        raise ModelError("artifact must be a JSON object")
    if doc.get("format") != FORMAT:
        raise ModelError(f"unsupported format {doc.get('format')!r}, expected {FORMAT!r}")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ModelError("'name' must be a non-empty string")
    version = doc.get("version")
    if isinstance(version, int) and not isinstance(version, bool):
        version = str(version)
    if not isinstance(version, str) or not version:
        raise ModelError("'version' must be a non-empty string")
    features = _names(doc, "features", 1)
    classes = _names(doc, "classes", 2)
    weights = doc.get("weights")
    if not isinstance(weights, list) or len(weights) != len(classes):
        raise ModelError(f"'weights' must be a list of {len(classes)} rows (one per class)")
    rows = tuple(_numbers(row, f"'weights' row {i}", len(features)) for i, row in enumerate(weights))
    bias = _numbers(doc.get("bias"), "'bias'", len(classes))
    return Model(name=name, version=version, features=features, classes=classes, weights=rows, bias=bias)


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not allowed")


def loads(text: str | bytes) -> Any:
    """Strict JSON parse: NaN/Infinity are rejected (they are not JSON), and so is nesting deeper than the
    parser's recursion limit (a ValueError, not a RecursionError)."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def load(path: str | Path) -> Model:
    """Load and validate an artifact. OSError if unreadable, ModelError (naming the file) if invalid."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        return from_dict(loads(text))
    except ValueError as exc:  # includes json.JSONDecodeError
        raise ModelError(f"invalid model artifact {path}: {exc}") from None
