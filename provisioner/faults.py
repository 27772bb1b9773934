"""Crash points for recovery tests: `MLPLAT_CRASH_AT=<phase>:<n>` kills this process with SIGKILL the n-th
time the journal reaches `phase` (pending | before-done | done). Unset in normal use: one env lookup."""

from __future__ import annotations

import os
import signal

_spec = os.environ.get("MLPLAT_CRASH_AT", "")
_phase, _, _n = _spec.partition(":")
_remaining = int(_n) if _n.isdigit() else 0
_counts: dict[str, int] = {}


def reached(phase: str) -> None:
    if not _remaining or phase != _phase:
        return
    _counts[phase] = _counts.get(phase, 0) + 1
    if _counts[phase] == _remaining:
        os.kill(os.getpid(), signal.SIGKILL)
