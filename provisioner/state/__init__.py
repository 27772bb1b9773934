"""State backends. `open_state` picks one from a URL or the stack file's `state:` block; sqlite is the default.

URLs: `sqlite:///abs/path.db` (or `sqlite://relative.db`), `postgresql://user@host:5432/db` (password from
PGPASSWORD or ~/.pgpass, never the stack file), `s3://bucket/prefix?region=us-east-1&endpoint_url=http://...`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from provisioner.errors import StateError
from provisioner.state.base import JournalEntry, LockInfo, ResourceRecord, StateBackend, StateMeta
from provisioner.state.codec import StateCodec, passphrase_key

__all__ = ["JournalEntry", "LockInfo", "ResourceRecord", "StateBackend", "StateMeta", "open_state"]

SCHEMES = {"sqlite": "sqlite", "postgres": "postgres", "postgresql": "postgres", "s3": "s3"}


def open_state(stack: str, stack_dir: Path, *, url: str | None = None, backend: str = "sqlite",
               path: str | None = None) -> StateBackend:
    if url and "://" not in url:
        raise StateError(f"state URL {url!r} has no scheme",
                         hint="write sqlite:///path/state.db, postgresql://host/db or s3://bucket/prefix")
    if url:
        scheme = url.partition("://")[0]
        if scheme not in SCHEMES:
            raise StateError(f"unknown state backend {scheme!r} in the state URL",
                             hint="use sqlite://, postgresql:// or s3://")
        backend = SCHEMES[scheme]
    state = _open(backend, stack, stack_dir, url, path)
    state.codec = StateCodec(_key_source(stack, state.meta().lineage))
    return state


def _open(backend: str, stack: str, stack_dir: Path, url: str | None, path: str | None) -> StateBackend:
    if backend == "sqlite":
        from provisioner.state.sqlite import SqliteState

        if url:
            path = url.partition("://")[2] or path  # sqlite:///abs/file.db or sqlite://relative/file.db
        db = Path(path) if path else stack_dir / ".mlplat" / f"{stack}.db"
        return SqliteState(db if db.is_absolute() else stack_dir / db, stack)
    if not url:
        raise StateError(f"state backend {backend!r} needs a url", hint="set state.url in the stack file or "
                                                                       "pass --state URL")
    if backend == "postgres":
        from provisioner.state.postgres import PostgresState

        return PostgresState(url, stack)
    if backend == "s3":
        from provisioner.state.s3 import S3State

        return S3State(url, stack)
    raise StateError(f"unknown state backend {backend!r}")


def _key_source(stack: str, lineage: str) -> Callable[[], bytes | None]:
    """The hook's key if a plugin provides one, else the passphrase's, salted with the state's lineage.
    Asked only when a secret is first sealed or opened (never inside a backend transaction's lock)."""
    def key() -> bytes | None:
        from provisioner import plugins

        provided = plugins.manager().hook.mlplat_state_key(stack=stack, lineage=lineage)
        return provided if provided is not None else passphrase_key(lineage)()

    return key
