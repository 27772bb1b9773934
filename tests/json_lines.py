"""`apply/destroy/migrate --json` print one JSON object per line (docs/output.md): read them."""

from __future__ import annotations

import json
from typing import Any


def json_lines(stdout: str) -> list[dict[str, Any]]:
    """Every line of the stream, parsed (each must be a whole JSON object)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def summary_of(stdout: str) -> dict[str, Any]:
    """The stream's last line, the summary (applied, summary, elapsed_s, outputs, migrations)."""
    last = json_lines(stdout)[-1]
    assert last["type"] == "summary", last
    return last
