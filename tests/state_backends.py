"""Factories for every state backend, so tests/test_state_backends.py holds them all to the same semantics.

A factory opens a backend for a stack name (several stacks may share one location: a database, a bucket) and can
dump every byte the backend stored (to prove secrets are sealed). A backend joins by adding a factory here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.state import StateBackend, open_state


@dataclass
class BackendFactory:
    name: str
    url: Callable[[str], str]  # stack name -> state URL
    raw: Callable[[], bytes]  # every byte stored so far
    #: several stacks live in one place (one database, one bucket) and must not block each other
    shared_location: bool

    def open(self, stack: str = "stack", stack_dir: Path | None = None) -> StateBackend:
        return open_state(stack, stack_dir or Path("."), url=self.url(stack))


def sqlite_factory(tmp_path: Path) -> BackendFactory:
    def raw() -> bytes:
        return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*.db*")))

    return BackendFactory("sqlite", lambda stack: f"sqlite:///{tmp_path}/{stack}.db", raw, shared_location=False)


FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], BackendFactory]] = {
    "sqlite": lambda request, tmp_path: sqlite_factory(tmp_path),
    "s3": lambda request, tmp_path: __import__("s3_state").s3_factory(request, tmp_path),
    "postgres": lambda request, tmp_path: __import__("pg_server").postgres_factory(request, tmp_path),
}
