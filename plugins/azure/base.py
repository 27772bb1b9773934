"""What every azure resource provider shares: the clients, tags, and ARM's long-running operations waited on
through the core.

Identity: ARM names objects by caller-chosen names (a PUT is an upsert by name), so names are derived from the
inputs and `find` looks the name up. Azure tags take any text, so every object carries `mlplat-stack`,
`mlplat-address` and the create's token `mlplat-token` as tags (Azure ML assets and endpoints alike).

Long operations: a `begin_*` call of azure-ai-ml answers at once with a poller (ARM's 201/202 with an
Azure-AsyncOperation header); the provider checkpoints `<action> <name>` and waits on the object's own
`provisioning_state` through `ctx.wait` (Succeeded; Failed/Canceled fail with the object's error), which a step
resumed after a crash can do again without the poller. The SDK's poller thread is left to finish on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from provisioner import cloud
from provisioner.cloud import operation_id, operation_of, unless_missing
from provisioner.errors import MlplatError
from provisioner.provider import ResourceProvider

if TYPE_CHECKING:
    from mlplat_plugins.azure.sdk import Clients
    from mlplat_plugins.azure.target import AzureTarget
    from provisioner.operations import StepContext

T = TypeVar("T")
STACK_TAG = "mlplat-stack"
ADDRESS_TAG = "mlplat-address"
TOKEN_TAG = "mlplat-token"
FAST = {"create": 300.0, "update": 300.0, "delete": 300.0}
LONG = {"create": 3600.0, "update": 3600.0, "delete": 3600.0}
#: ARM provisioning states that end an operation
SUCCEEDED = ("Succeeded",)
FAILED = ("Failed", "Canceled")


class AzureProvider(ResourceProvider):
    timeouts = FAST

    def __init__(self, target: AzureTarget) -> None:
        self.target = target
        self.settings = target.settings

    @property
    def azure(self) -> Clients:
        return self.target.clients()

    def tags(self, address: str, ctx: StepContext | None = None) -> dict[str, str]:
        tags = {STACK_TAG: self.target.context.stack_name, ADDRESS_TAG: address}
        if ctx is not None and ctx.token:
            tags[TOKEN_TAG] = ctx.token
        return tags

    def find_named(self, name: str, ctx: StepContext, lookup: Callable[[], T | None],
                   tags_of: Callable[[T], dict[str, str] | None]) -> T | None:
        """`cloud.find_own` for an object keyed by `name`, its token read from its tags."""
        return cloud.find_own(name, ctx, lookup, lambda found: (tags_of(found) or {}).get(TOKEN_TAG))

    @property
    def intervals(self) -> dict[str, float]:
        interval = self.settings.poll_interval_s
        return {"interval": interval, "max_interval": max(interval, 60.0)}

    def start(self, ctx: StepContext, action: str, name: str, call: Callable[[], Any]) -> None:
        """Issue a long ARM operation (`call`, a `begin_*`) and checkpoint `<action> <name>`, unless this step is
        resuming that checkpoint (then the operation is already under way: only wait)."""
        if operation_of(ctx, action) is None:
            call()
            ctx.checkpoint(operation_id(action, name))

    def wait_provisioned(self, ctx: StepContext, describe: Callable[[], Any], what: str, phase: str = "Creating"
                         ) -> Any:
        """Poll `describe()` (an azure-ai-ml entity with `provisioning_state`) until Succeeded; fail fast on
        Failed/Canceled or a vanished object."""
        return cloud.wait_for_status(ctx, describe, what, phase, ready=SUCCEEDED, failed=FAILED,
                                     status_of=_state,
                                     reason_of=_reason, **self.intervals)

    def wait_gone(self, ctx: StepContext, describe: Callable[[], Any], what: str) -> None:
        cloud.wait_gone(ctx, describe, what, **self.intervals)

    def delete_and_wait(self, ctx: StepContext, action: str, name: str, delete: Callable[[], Any],
                        describe: Callable[[], Any], what: str) -> bool:
        return cloud.delete_and_wait(ctx, action, name, delete, describe, what, **self.intervals)

    @staticmethod
    def get(call: Callable[[], T]) -> T | None:
        """`call()`, None when Azure answers not found."""
        return unless_missing(call)

    def refuse_stranger(self, what: str, name: str) -> MlplatError:
        return MlplatError(f"{what} {name} exists and was not made by this apply",
                           hint="rename the component, or delete or import the existing object")


def _state(seen: Any) -> str:
    """An entity's provisioning state as ARM spells it (azure-ai-ml gives enums for some: their `.value`)."""
    state = getattr(seen, "provisioning_state", None)
    return str(getattr(state, "value", state) or "Succeeded")


def _reason(seen: Any) -> str | None:
    for attr in ("provisioning_errors", "error", "errors"):
        value = getattr(seen, attr, None)
        if value:
            return str(value)
    return None
