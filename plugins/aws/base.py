"""What every aws resource provider shares: clients, tags, names with content hashes, waits through the engine.

Long operations (an endpoint going InService, a HyperPod cluster, a file system) are waited on with the step's
`ctx.wait`: it gives the target's concurrency slot back between polls, honours the kind's timeout (`timeouts`
below, or the target's `timeouts:` setting) and stops on Ctrl-C. A provider checkpoints the operation it started
(`ctx.checkpoint(operation_id(...))`) before waiting, and given `ctx.operation` it waits on that one instead of
issuing the call again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mlplat_plugins.aws.sdk import unless_missing
from provisioner.errors import MlplatError
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
        """`find` for a SageMaker object keyed by `name`: never one in `ctx.exclude`, and given a token only the
        one the create carrying it made (its mlplat:token tag); `lookup()` describes it, None if absent."""
        found = lookup() if name not in ctx.exclude else None
        if found is None or (ctx.token and not made_by(self.sagemaker_tags(arn_of(found)), ctx)):
            return None
        return found

    def wait(self, ctx: StepContext, check: Callable[[], tuple[bool, T]], what: str) -> T:
        """Poll `check` through the engine: from `poll_interval_s`, backing off to a minute (or the interval)."""
        interval = self.settings.poll_interval_s
        return ctx.wait(check, what=what, interval=interval, max_interval=max(interval, 60.0))

    def wait_in_service(self, ctx: StepContext, describe: Callable[[], dict[str, Any] | None], what: str, phase: str,
                        *, status_key: str, reason_key: str, failed: tuple[str, ...] = ("Failed",)) -> dict[str, Any]:
        """Poll `describe` until its status is InService; fail fast on a failed status or a vanished object."""
        def check() -> tuple[bool, Any]:
            seen = describe()
            if seen is None:
                raise MlplatError(f"{what} disappeared while {phase.lower()}")
            status = seen[status_key]
            if status in failed:
                raise MlplatError(f"{what} is {status}: {seen.get(reason_key) or 'no reason given'}")
            return status == "InService", seen if status == "InService" else status

        return self.wait(ctx, check, f"{what} {phase} → InService")

    def wait_gone(self, ctx: StepContext, describe: Callable[[], dict[str, Any] | None], what: str) -> None:
        self.wait(ctx, lambda: (describe() is None, "Deleting"), f"{what} deleted")

    def delete_and_wait(self, ctx: StepContext, action: str, id: str, delete: Callable[[], Any],
                        describe: Callable[[], dict[str, Any] | None], what: str) -> bool:
        """A long delete: issue it (unless resuming its checkpoint), checkpoint it, wait until the object is gone.
        False when the object was gone already (nothing was issued)."""
        if operation_of(ctx, action) is None:
            if unless_missing(delete) is None:
                return False
            ctx.checkpoint(operation_id(action, id))
        self.wait_gone(ctx, describe, what)
        return True


def made_by(tags: list[dict[str, str]] | None, ctx: StepContext) -> bool:
    """Whether an object's tags name the create carrying `ctx.token` as its maker."""
    return bool(ctx.token) and tag_value(tags, TOKEN_TAG) == ctx.token


def operation_id(action: str, *ids: str) -> str:
    """The id a step checkpoints for a cloud operation it started: the API action and the object(s) it acts on."""
    return " ".join((action, *ids))


def operation_of(ctx: StepContext, action: str) -> list[str] | None:
    """The object ids of `ctx.operation` when it is an `action` operation (a step resumed after a crash)."""
    if not ctx.operation:
        return None
    parts = ctx.operation.split(" ")
    return parts[1:] if parts[0] == action and len(parts) > 1 else None


def content_name(base: str, inputs: dict[str, Any], *ignore: str) -> str:
    """`base-<hash of inputs>`: a replacement gets a new name (create-before-destroy), a retried create the same."""
    content = {k: v for k, v in inputs.items() if k not in ignore and k != "base_name"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{base}-{digest}"


def tag_value(tags: list[dict[str, str]] | None, key: str = ADDRESS_TAG) -> str | None:
    for tag in tags or []:
        if tag.get("Key", tag.get("key")) == key:
            return tag.get("Value", tag.get("value"))
    return None
