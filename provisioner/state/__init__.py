"""State backends. `open_state(url_or_config, ...)` picks one: sqlite is the embedded default."""

from __future__ import annotations

from pathlib import Path

from provisioner.errors import StateError
from provisioner.state.base import JournalEntry, LockInfo, ResourceRecord, StateBackend, StateMeta

__all__ = ["JournalEntry", "LockInfo", "ResourceRecord", "StateBackend", "StateMeta", "open_state"]


def open_state(stack: str, stack_dir: Path, *, url: str | None = None, backend: str = "sqlite",
               path: str | None = None) -> StateBackend:
    if url:
        scheme, _, rest = url.partition("://")
        backend = scheme
        path = rest or path  # sqlite:///abs/file.db or sqlite://relative/file.db
    if backend == "sqlite":
        from provisioner.state.sqlite import SqliteState

        db = Path(path) if path else stack_dir / ".mlplat" / f"{stack}.db"
        if not db.is_absolute():
            db = stack_dir / db
        return SqliteState(db, stack)
    raise StateError(f"state backend {backend!r} is not available yet", hint="use the default sqlite backend")
