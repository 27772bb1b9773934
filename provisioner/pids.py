"""Is a process alive? Shared by the stack lock (a dead holder on this host) and the local runtime's servers."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie: a killed process its parent has not reaped yet still answers
    os.kill(pid, 0), and where pid 1 reaps nothing (containers, this sandbox) that can last forever."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS) or it just vanished; os.kill said it existed
    # Format: "pid (comm) state ..."; comm may contain spaces or parentheses, so split after the last ')'.
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] not in ("Z", "X")
