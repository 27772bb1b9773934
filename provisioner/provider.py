"""The resource provider protocol: what a plugin implements per resource kind.

Providers never see the graph or the state; they get one resource's inputs and talk to their cloud.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Diff:
    changed: tuple[str, ...] = ()
    forces_replacement: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changed


@dataclass(slots=True)
class Created:
    id: str
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Observed:
    """What `read` saw: the inputs as they are in the cloud now (for drift) and the outputs."""

    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)


class ResourceProvider:
    """Base class with sensible defaults; override create/read/update/delete (and find for crash recovery).

    Contract:
    - `create` is idempotent for a given address: names/tokens derive from the address, so a create retried
      after a crash finds the resource it made instead of making a second one.
    - `read` returns None when the resource is gone.
    - `find` locates what a create for `address` made (used for pending journal entries after a crash).
    - Transient failures raise `provisioner.errors.RetryableError`; others raise any exception, which the
      engine reports with the resource address.
    """

    #: inputs whose change cannot be applied in place
    force_new: frozenset[str] = frozenset()
    #: replace by creating the new object before deleting the old one (needs names that do not collide)
    create_before_destroy: bool = False

    def diff(self, prior: dict[str, Any], desired: dict[str, Any]) -> Diff:
        keys = sorted(set(prior) | set(desired))
        changed = tuple(k for k in keys if prior.get(k) != desired.get(k))  # a Ref (unknown) never equals a value
        return Diff(changed, tuple(k for k in changed if k in self.force_new))

    def create(self, address: str, inputs: dict[str, Any]) -> Created:
        raise NotImplementedError

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        raise NotImplementedError

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def delete(self, id: str, inputs: dict[str, Any]) -> None:
        raise NotImplementedError

    def find(self, address: str, inputs: dict[str, Any]) -> Created | None:
        """Default: nothing findable, so an interrupted create is forgotten and re-run (idempotently)."""
        return None

    def import_(self, id: str) -> Observed:
        raise NotImplementedError(f"{type(self).__name__} cannot import existing resources")
