"""What every aws resource provider shares: clients, tags, and the core's cloud helpers (`provisioner.cloud`:
find-by-derived-name, waits on long operations) bound to AWS's tags and the target's poll interval.

Long operations (an endpoint going InService, a HyperPod cluster, a file system) are waited on with the step's
`ctx.wait`: it gives the target's concurrency slot back between polls, honours the kind's timeout (`timeouts`
below, or the target's `timeouts:` setting) and stops on Ctrl-C. A provider checkpoints the operation it started
(`ctx.checkpoint(operation_id(...))`) before waiting, and given `ctx.operation` it waits on that one instead of
issuing the call again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from provisioner import cloud
from provisioner.operations import OPERATIONS
from provisioner.provider import ResourceProvider

if TYPE_CHECKING:
    from mlplat_plugins.aws.sdk import Clients
    from mlplat_plugins.aws.target import AwsTarget
    from provisioner.operations import StepContext

T = TypeVar("T")
ADDRESS_TAG = "mlplat:address"
STACK_TAG = "mlplat:stack"
#: the idempotency token of the create that made an object (the engine's `ctx.token`), so `find` can tell it
#: from an object made for the same address by another create (a replace's predecessor)
TOKEN_TAG = "mlplat:token"
#: seconds a kind that never waits on a long operation may take (API calls that answer at once)
FAST = {"create": 300.0, "update": 300.0, "delete": 300.0}


class AwsProvider(ResourceProvider):
    timeouts = FAST

    def __init__(self, target: AwsTarget) -> None:
        self.target = target
        self.settings = target.settings
        if "wait_timeout_s" in self.settings.model_fields_set:  # the older setting, where a stack still sets it
            self.timeouts = dict.fromkeys(OPERATIONS, self.settings.wait_timeout_s)

    @property
    def aws(self) -> Clients:
        return self.target.clients()

    def tags(self, address: str, ctx: StepContext | None = None) -> list[dict[str, str]]:
        """Every object is tagged with its stack and address, so a list call can prove what exists, and with the
        token of the create that made it, so recovery can tell it from its predecessor."""
        tags = [{"Key": STACK_TAG, "Value": self.target.context.stack_name}, {"Key": ADDRESS_TAG, "Value": address}]
        if ctx is not None and ctx.token:
            tags.append({"Key": TOKEN_TAG, "Value": ctx.token})
        return tags

    def sagemaker_tags(self, arn: str) -> list[dict[str, str]]:
        return self.aws.sagemaker.list_tags(ResourceArn=arn).get("Tags", [])

    def find_named(self, name: str, ctx: StepContext, lookup: Callable[[], T | None], arn_of: Callable[[T], str]
                   ) -> T | None:
        """`cloud.find_own` for a SageMaker object keyed by `name`, its token read from its mlplat:token tag."""
        return cloud.find_own(name, ctx, lookup, lambda found: tag_value(self.sagemaker_tags(arn_of(found)), TOKEN_TAG))

    @property
    def intervals(self) -> dict[str, float]:
        """Waits poll from `poll_interval_s`, backing off to a minute (or the interval)."""
        interval = self.settings.poll_interval_s
        return {"interval": interval, "max_interval": max(interval, 60.0)}

    def wait(self, ctx: StepContext, check: Callable[[], tuple[bool, T]], what: str) -> T:
        """Poll `check` through the engine at the target's intervals."""
        return ctx.wait(check, what=what, **self.intervals)

    def wait_in_service(self, ctx: StepContext, describe: Callable[[], dict[str, Any] | None], what: str, phase: str,
                        *, status_key: str, reason_key: str, failed: tuple[str, ...] = ("Failed",)) -> dict[str, Any]:
        """Poll `describe` until its status is InService; fail fast on a failed status or a vanished object."""
        return cloud.wait_for_status(ctx, describe, what, phase, ready="InService", failed=failed,
                                     status_of=lambda seen: seen[status_key],
                                     reason_of=lambda seen: seen.get(reason_key), **self.intervals)

    def wait_gone(self, ctx: StepContext, describe: Callable[[], dict[str, Any] | None], what: str) -> None:
        cloud.wait_gone(ctx, describe, what, **self.intervals)

    def delete_and_wait(self, ctx: StepContext, action: str, id: str, delete: Callable[[], Any],
                        describe: Callable[[], dict[str, Any] | None], what: str) -> bool:
        """`cloud.delete_and_wait` at the target's intervals (False: the object was gone already)."""
        return cloud.delete_and_wait(ctx, action, id, delete, describe, what, **self.intervals)


def made_by(tags: list[dict[str, str]] | None, ctx: StepContext) -> bool:
    """Whether an object's tags name the create carrying `ctx.token` as its maker."""
    return bool(ctx.token) and tag_value(tags, TOKEN_TAG) == ctx.token


def tag_value(tags: list[dict[str, str]] | None, key: str = ADDRESS_TAG) -> str | None:
    for tag in tags or []:
        if tag.get("Key", tag.get("key")) == key:
            return tag.get("Value", tag.get("value"))
    return None
