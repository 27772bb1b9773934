"""Engine events, delivered to the CLI's progress display and to `mlplat_on_event` hooks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """kind: step-start | step-done | step-failed | step-retry | step-skipped | step-interrupted | progress |
    warning | recovered | imported"""

    kind: str
    address: str = ""
    action: str = ""
    message: str = ""
    elapsed: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
