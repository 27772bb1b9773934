"""What every toy provider shares: the client, labels, poll intervals, and the toy's CRUD over long operations."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from provisioner.cloud import (
    delete_and_wait,
    find_own,
    operation_id,
    operation_of,
    or_existing,
    unless_missing,
    wait_for_status,
)
from provisioner.errors import MlplatError
from provisioner.provider import Created, Observed, ResourceProvider

if TYPE_CHECKING:
    from provisioner.operations import StepContext
    from toy_plugin.sdk import Client
    from toy_plugin.target import ToyTarget

TOKEN_LABEL = "mlplat-token"


class ToyProvider(ResourceProvider):
    """One toy collection: objects keyed by `name`, whose `spec` is the resource's inputs (so `read` and
    `import_` rebuild the inputs from the cloud alone)."""

    timeouts = {"create": 300.0, "update": 300.0, "delete": 300.0}
    #: the toy collection of this kind's objects
    collection: ClassVar[str]

    def __init__(self, target: ToyTarget) -> None:
        self.target, self.settings = target, target.settings

    @property
    def api(self) -> Client:
        return self.target.client()

    def labels(self, address: str, ctx: StepContext) -> dict[str, str]:
        return {"mlplat-stack": self.target.context.stack_name, "mlplat-address": address, TOKEN_LABEL: ctx.token}

    @property
    def intervals(self) -> dict[str, float]:
        interval = self.settings.poll_interval_s
        return {"interval": interval, "max_interval": max(interval, 60.0)}

    # -- what a kind refines -------------------------------------------------------------------------------

    def name_of(self, inputs: dict[str, Any]) -> str:
        """The object's name, from the inputs alone."""
        return inputs["name"]

    def spec(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return dict(inputs)

    def upload(self, inputs: dict[str, Any]) -> str | None:
        """A file the create uploads with the object (a model's artifact)."""
        return None

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {}

    # -- the protocol --------------------------------------------------------------------------------------

    @property
    def what(self) -> str:
        return f"toy {self.collection}"

    def _wait(self, ctx: StepContext, op_name: str, name: str, phase: str) -> dict[str, Any]:
        """Wait on a toy operation, then describe the object."""
        wait_for_status(ctx, lambda: self.api.get_operation(op_name), f"{self.what} {name}", phase, ready="DONE",
                        failed=("FAILED",), status_of=_op_status, reason_of=lambda op: op.get("error"),
                        **self.intervals)
        return self.api.get(self.collection, name)

    def _adopt(self, name: str, ctx: StepContext) -> dict[str, Any]:
        seen = find_own(name, ctx, lambda: self.api.get(self.collection, name), _token_of)
        if seen is None:
            raise MlplatError(f"{self.what} {name} exists and was not made by this apply", hint="rename or delete it")
        return seen

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = self.name_of(inputs)
        resumed = operation_of(ctx, "Create")
        if resumed is None:
            answer = or_existing(
                lambda: self.api.create(self.collection, name, self.spec(inputs), self.labels(address, ctx),
                                        upload=self.upload(inputs)),
                lambda: self._adopt(name, ctx))
            op_name = answer.get("operation") if "state" in answer else (None if answer["done"] else answer["name"])
            if op_name is None:
                return Created(name, self.outputs(self.api.get(self.collection, name)))
            ctx.checkpoint(operation_id("Create", op_name))
        else:
            op_name = resumed[0]
        return Created(name, self.outputs(self._wait(ctx, op_name, name, "Creating")))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        obj = unless_missing(lambda: self.api.get(self.collection, id))
        if obj is None or obj["state"] == "DELETING":
            return None
        return Observed(obj["spec"], self.outputs(obj))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        resumed = operation_of(ctx, "Update")
        if resumed is None:
            op = self.api.update(self.collection, id, self.spec(desired))
            if op["done"]:
                return self.outputs(self.api.get(self.collection, id))
            op_name = op["name"]
            ctx.checkpoint(operation_id("Update", op_name))
        else:
            op_name = resumed[0]
        return self.outputs(self._wait(ctx, op_name, id, "Updating"))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        delete_and_wait(ctx, "Delete", id, lambda: self.api.delete(self.collection, id),
                        lambda: self.api.get(self.collection, id), f"{self.what} {id}", **self.intervals)

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = self.name_of(inputs)
        seen = find_own(name, ctx, lambda: self.api.get(self.collection, name), _token_of)
        if seen is None:
            return None
        if seen.get("operation"):  # made, still being created: wait for it as the create would have
            seen = self._wait(ctx, seen["operation"], name, "Creating")
        return Created(name, self.outputs(seen))


def _op_status(op: dict[str, Any]) -> str:
    return "FAILED" if op.get("error") else "DONE" if op["done"] else "RUNNING"


def _token_of(obj: dict[str, Any]) -> str | None:
    return obj["labels"].get(TOKEN_LABEL)
