"""`mlplat state migrate --to URL`: copy a stack's state to another backend, lineage, serial and journal included.

Secrets travel as Secret values (opened with the source's key, sealed again with the destination's; both are
derived from the same lineage, so one passphrase serves both).
"""

from __future__ import annotations

from provisioner.errors import StateError
from provisioner.state.base import StateBackend


def migrate(source: StateBackend, destination: StateBackend) -> int:
    """Copy everything; the destination must be empty. Returns the number of resources copied."""
    if destination.resources():
        raise StateError(f"{destination.url} already holds resources; migrate only into an empty state")
    meta = source.meta()
    destination.codec = source.codec  # the copy takes the source's lineage, and the key is salted with it
    resources = list(source.resources().values())
    destination.import_state(meta, resources, source.journal(), source.get_outputs())
    copied = destination.resources()
    if copied != {r.address: r for r in resources} or destination.meta() != meta:
        raise StateError(f"the copy in {destination.url} does not match the source; the source is unchanged")
    return len(copied)
