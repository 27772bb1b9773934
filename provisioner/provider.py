"""The resource provider protocol: what a plugin implements per resource kind.

Providers never see the graph or the state; they get one resource's inputs and talk to their cloud. The engine
shares one provider object per (target, kind) between its worker threads: a provider must be safe to call from
several threads at once (keep per-call data in locals, guard shared caches with a lock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from provisioner.operations import StepContext

#: how a provider replaces an object when a `force_new` input changes (see ResourceProvider.replace_mode)
ReplaceMode = Literal["create_before_destroy", "destroy_before_create", "in_place_recreate"]
REPLACE_MODES: tuple[str, ...] = ("create_before_destroy", "destroy_before_create", "in_place_recreate")


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

    Contract (engine contract v2):
    - `create(address, inputs, ctx)` is idempotent for `ctx.token`: the engine mints the token, writes it in the
      pending journal entry before the call, and passes the same token on every retry and to `find` after a
      crash. Tag or name what you create with it where the cloud allows (a client token, a tag, a label).
    - `find(address, inputs, ctx)` locates what the create carrying `ctx.token` made — never an object whose
      id is in `ctx.exclude` (the current object of a replace, deposed ones): an address alone cannot tell a
      replacement from its predecessor. Return None when nothing was made.
    - `read` returns None when the resource is gone; it may be called concurrently with anything.
    - `update(id, prior, desired, ctx)` returns outputs (those in `update_outputs` may change); `delete(id,
      inputs, ctx)` succeeds when the object is already gone.
    - Long operations wait with `ctx.wait(...)` (backoff, progress, the per-kind timeout, Ctrl-C) after
      `ctx.checkpoint(operation_id)`, and resume an operation named by `ctx.operation` instead of issuing a new
      one (set when recovery finishes a step a crash interrupted mid-wait).
    - `import_(address, id, inputs)` adopts an existing object (`mlplat import`): return what `read` would, or
      None when `id` is not an object of this kind.
    - Transient failures raise `provisioner.errors.RetryableError` (with `retry_after` when the cloud said);
      others raise any exception, which the engine reports with the resource address.
    """

    #: inputs whose change cannot be applied in place
    force_new: frozenset[str] = frozenset()
    #: how a replacement happens: "create_before_destroy" — the cloud can hold the old and the new object at
    #: once (names do not collide), so the new one is made first; "destroy_before_create" — it cannot (objects
    #: are keyed by a caller-chosen name); "in_place_recreate" — `create` itself replaces the object under its
    #: name in one call (an upsert that recreates), `ctx.replacing` naming the id it replaces
    replace_mode: ReplaceMode = "destroy_before_create"
    #: outputs an in-place update may change: dependents see them as "known after apply"
    update_outputs: frozenset[str] = frozenset()
    #: outputs that are secrets (keys, passwords): sealed in the state, so a state key is required up front
    secret_outputs: frozenset[str] = frozenset()
    #: inputs the cloud never returns (keys, passwords): `read` may omit them; they are never drift
    write_only: frozenset[str] = frozenset()
    #: default seconds a create/update/delete may wait on its cloud operation (a target's `timeouts:` overrides)
    timeouts: dict[str, float] = {}  # read-only class default
    #: the resource lives only in the state (like Terraform's `terraform_data`): its calls return at once and
    #: reach nothing outside the process, so the engine runs its steps on the scheduling thread instead of
    #: handing each to a worker (a thread hand-off costs more than the step itself)
    state_only: bool = False

    @property
    def create_before_destroy(self) -> bool:
        return self.replace_mode == "create_before_destroy"

    def diff(self, prior: dict[str, Any], desired: dict[str, Any]) -> Diff:
        keys = sorted(set(prior) | set(desired))
        changed = tuple(k for k in keys if prior.get(k) != desired.get(k))  # a Ref (unknown) never equals a value
        return Diff(changed, tuple(k for k in changed if k in self.force_new))

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        raise NotImplementedError

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        raise NotImplementedError

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        raise NotImplementedError

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        raise NotImplementedError

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        """Default: nothing findable, so an interrupted create is forgotten and re-run (idempotently)."""
        return None

    #: whether `import_` can adopt an existing object of this kind (`mlplat import`)
    importable: bool = True
    #: what an `mlplat import` id of this kind looks like (`fs-…`, `projects/…/endpoints/…`); None: any id
    import_id: re.Pattern[str] | None = None

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """What to record for an existing object `id` adopted at `address` (`mlplat import`): its inputs and
        outputs as `read` reports them, or None when `id` names no object of this kind. `inputs` are the stack
        file's desired inputs (references to resources not yet in the state left as `Ref`s); the differences
        between them and what this returns are the next plan's diff. Default: None for an id `import_id` does
        not match, else `read(id, inputs)`; override when an object must be checked to be of this kind or `read`
        needs more than the id."""
        if self.import_id is not None and not self.import_id.fullmatch(id):
            return None
        return self.read(id, inputs)


def observed_inputs(provider: ResourceProvider, recorded: dict[str, Any], observed: dict[str, Any]) -> dict[str, Any]:
    """What `read` saw, with the write-only inputs (which no read returns) taken from the record."""
    if not provider.write_only:
        return observed
    return {**observed, **{k: recorded[k] for k in provider.write_only if k in recorded}}


def mark_secret_outputs(provider: ResourceProvider, outputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs with the provider's declared secret ones wrapped as `Secret`, so the state codec seals them."""
    if not provider.secret_outputs:
        return outputs
    from provisioner.secrets import Secret

    return {k: Secret(v) if k in provider.secret_outputs and isinstance(v, str) else v for k, v in outputs.items()}
