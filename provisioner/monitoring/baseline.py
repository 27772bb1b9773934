"""A drift check's baseline dataset, and the features of captured requests.

Baseline: a CSV file with a header row (read with the csv module; a cell that parses as a finite number is a
float, an empty one is missing, anything else a string), or JSON lines, one object per row (numbers as floats;
columns in the order they first appear). Its columns are the model's features in input order.

Captured request → instances: ``{"instances": [...]}`` (SageMaker / TF Serving style; also ``"inputs"``), a bare
list of instances, or one instance (a JSON object of features). An instance that is a list maps by position to
the baseline's columns; an object maps by name; a scalar is the first column's value.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import MlplatError

#: most rows read from a baseline (datasets are bounded; a larger file is sampled by its first rows)
MAX_ROWS = 1_000_000


@dataclass
class Baseline:
    path: Path
    columns: list[str]
    values: dict[str, list[Any]]  # column -> its non-missing values (floats or strings)
    rows: int


def cell(value: Any) -> Any:
    """A value as drift compares it: a finite number → float; bool → "true"/"false"; a string that parses as a
    finite number → float; other strings as they are; None, "", NaN and anything else (lists, objects) → None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return text
        return number if math.isfinite(number) else None
    return None


def category(value: Any) -> str:
    """A value as a categorical feature compares it: 1 and 1.0 and "1" are one category."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load(path: str | Path) -> Baseline:
    """The baseline at `path` (CSV with a header, or JSON lines); MlplatError when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MlplatError(f"cannot read the drift baseline {path}: {exc}") from None
    first = text.lstrip()[:1]
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or first == "{":
        columns, rows = _json_lines(path, text)
    else:
        columns, rows = _csv(path, text)
    if not rows:
        raise MlplatError(f"the drift baseline {path} holds no rows")
    values: dict[str, list[Any]] = {c: [] for c in columns}
    for row in rows:
        for column in columns:
            value = cell(row.get(column))
            if value is not None:
                values[column].append(value)
    return Baseline(path, columns, values, len(rows))


def declared(baseline: str, features: list[str] | None, stack_dir: Path) -> tuple[Path, list[str]]:
    """The baseline file an endpoint's `monitoring.drift` names (relative to the stack file) and the features it
    checks (every column when it names none): what a cloud target's lowering uploads and watches. MlplatError for a
    missing or unreadable file, one without rows, or a feature that is not one of its columns."""
    source = Path(os.path.abspath(stack_dir / baseline))
    if not source.is_file():
        raise MlplatError(f"monitoring.drift.baseline {baseline!r} is not a file ({source})",
                          hint="give a CSV file with a header row (or JSON lines), relative to the stack file")
    columns = load(source).columns  # refuses an empty one
    checked = list(features or columns)
    missing = [f for f in checked if f not in columns]
    if missing:
        raise MlplatError(f"monitoring.drift: features {', '.join(missing)} are not columns of the baseline "
                          f"{baseline} (columns: {', '.join(columns)})",
                          hint="name baseline columns in drift.features, or leave features out")
    return source, checked


def _csv(path: Path, text: str) -> tuple[list[str], list[dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise MlplatError(f"the drift baseline {path} is empty (a CSV file needs a header row)") from None
    except csv.Error as exc:
        raise MlplatError(f"the drift baseline {path} is not valid CSV: {exc}") from None
    columns = [h.strip() for h in header]
    if not any(columns) or len(set(columns)) != len(columns) or "" in columns:
        raise MlplatError(f"the drift baseline {path} needs a header row of unique, non-empty column names",
                          hint=f"its first line is {', '.join(header)!r}")
    rows = []
    try:
        for number, record in enumerate(reader, start=2):
            if not record or not any(c.strip() for c in record):
                continue
            if len(record) != len(columns):
                raise MlplatError(f"{path}:{number}: {len(record)} cells, the header names {len(columns)} columns")
            rows.append(dict(zip(columns, record, strict=True)))
            if len(rows) >= MAX_ROWS:
                break
    except csv.Error as exc:
        raise MlplatError(f"the drift baseline {path} is not valid CSV: {exc}") from None
    return columns, rows


def _json_lines(path: Path, text: str) -> tuple[list[str], list[dict[str, Any]]]:
    columns: dict[str, None] = {}
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise MlplatError(f"{path}:{number}: not a JSON object ({exc})") from None
        if not isinstance(row, dict):
            raise MlplatError(f"{path}:{number}: each line of a JSON-lines baseline must be an object")
        columns.update(dict.fromkeys(str(k) for k in row))
        rows.append({str(k): v for k, v in row.items()})
        if len(rows) >= MAX_ROWS:
            break
    return list(columns), rows


def instances(request: Any) -> list[Any]:
    """The instances of a captured request body (see the module's docstring); [] when it holds none."""
    if isinstance(request, dict):
        for key in ("instances", "inputs"):
            if key in request:
                inner = request[key]
                return inner if isinstance(inner, list) else [inner]
        if "text" in request and len(request) == 1:  # a body that was not JSON
            return []
        return [request]
    if isinstance(request, list):
        if request and all(not isinstance(v, (list, dict)) for v in request):
            return [request]  # one instance as a bare list of values
        return request
    return []


def features(instance: Any, columns: list[str]) -> dict[str, Any]:
    """One instance's feature values by baseline column: a list by position, an object by name, a scalar as the
    first column. Values are `cell`-normalized; missing ones are left out."""
    if isinstance(instance, list):
        pairs = zip(columns, instance, strict=False)
    elif isinstance(instance, dict):
        pairs = ((c, instance.get(c)) for c in columns)
    elif columns:
        pairs = iter([(columns[0], instance)])
    else:
        pairs = iter(())
    found = {}
    for column, raw in pairs:
        value = cell(raw)
        if value is not None:
            found[column] = value
    return found


def columns_of(rows: list[dict[str, Any]], columns: list[str]) -> dict[str, list[Any]]:
    """Captured rows → the values of each baseline column over every instance of their requests."""
    values: dict[str, list[Any]] = {c: [] for c in columns}
    for row in rows:
        for instance in instances(row.get("request")):
            for column, value in features(instance, columns).items():
                values[column].append(value)
    return values
