"""What every gcp resource provider shares: the clients, labels, and Google's long-running operations waited on
through the core (checkpoint the operation's name, poll it with `ctx.wait`, resume it after a crash).

Identity: Google names most objects by caller-chosen ids (an endpoint id, a Filestore instance id, a repository
id), so names are derived from the inputs and `find` looks the name up. GCP label values allow only `[a-z0-9_-]`
(63 characters), so an object carries its stack and the create's token (`ctx.token`: 12 hex, a dash, a number) as
labels, and its mlplat address in its description or display name (`describe(address)`), where the harness and
`import` read it back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from provisioner import cloud
from provisioner.cloud import operation_id, operation_of
from provisioner.provider import ResourceProvider

if TYPE_CHECKING:
    from mlplat_plugins.gcp.sdk import Client, Clients
    from mlplat_plugins.gcp.target import GcpTarget
    from provisioner.operations import StepContext

T = TypeVar("T")
STACK_LABEL = "mlplat-stack"
#: the idempotency token of the create that made an object, so `find` can tell it from a replace's predecessor
TOKEN_LABEL = "mlplat-token"
#: the prefix of a description / display name that names the object's mlplat address
ADDRESS_PREFIX = "mlplat:"
#: seconds a kind that answers at once may take
FAST = {"create": 300.0, "update": 300.0, "delete": 300.0}
#: seconds for kinds whose operations take long (an endpoint deploy, a Filestore instance, a persistent resource)
LONG = {"create": 3600.0, "update": 3600.0, "delete": 3600.0}


def label_value(text: str) -> str:
    """A legal GCP label value: lower case, `[a-z0-9_-]`, at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def describe(address: str) -> str:
    """The description / display name that names an object's address (`mlplat:<address>`)."""
    return f"{ADDRESS_PREFIX}{address}"


def address_of(text: str | None) -> str | None:
    """The address a description written by `describe` names, else None."""
    return text[len(ADDRESS_PREFIX):] if text and text.startswith(ADDRESS_PREFIX) else None


class GcpProvider(ResourceProvider):
    timeouts = FAST

    def __init__(self, target: GcpTarget) -> None:
        self.target = target
        self.settings = target.settings

    @property
    def gcp(self) -> Clients:
        return self.target.clients()

    @property
    def project(self) -> str:
        return self.settings.project

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def location(self) -> str:
        """`projects/<project>/locations/<region>`: the parent of the target's regional objects."""
        return f"projects/{self.settings.project}/locations/{self.settings.region}"

    def labels(self, ctx: StepContext | None = None) -> dict[str, str]:
        """The stack, and the token of the create that made the object (so recovery can tell it apart)."""
        labels = {STACK_LABEL: label_value(self.target.context.stack_name)}
        if ctx is not None and ctx.token:
            labels[TOKEN_LABEL] = ctx.token  # 12 hex, a dash, a number: a legal label value as it is
        return labels

    @staticmethod
    def token_of(labels: dict[str, str] | None) -> str | None:
        return (labels or {}).get(TOKEN_LABEL)

    def find_named(self, name: str, ctx: StepContext, lookup: Callable[[], T | None],
                   labels_of: Callable[[T], dict[str, str] | None]) -> T | None:
        """`cloud.find_own` for an object keyed by `name`, its token read from its labels."""
        return cloud.find_own(name, ctx, lookup, lambda found: self.token_of(labels_of(found)))

    @property
    def intervals(self) -> dict[str, float]:
        """Waits poll from `poll_interval_s`, backing off to a minute (or the interval)."""
        interval = self.settings.poll_interval_s
        return {"interval": interval, "max_interval": max(interval, 60.0)}

    # --- long-running operations ------------------------------------------------------------------------

    def run_operation(self, ctx: StepContext, action: str, start: Callable[[], Any], client: Client,
                      what: str) -> Any:
        """Start a long-running operation with `start()` (a GAPIC call returning an api_core Operation, or the
        operation's name), checkpoint `<action> <operation name>`, and wait for it; resumed after a crash
        (`ctx.operation` is an `action` checkpoint), only wait. Returns the finished google.longrunning Operation; a
        failed operation raises GcpApiError with Google's message."""
        resumed = operation_of(ctx, action)
        if resumed:
            name = resumed[-1]
        else:
            started = start()
            name = started if isinstance(started, str) else started.operation.name
            ctx.checkpoint(operation_id(action, name))
        return self.wait_operation(ctx, client, name, what)

    def wait_operation(self, ctx: StepContext, client: Client, name: str, what: str) -> Any:
        """Poll the operation `name` with `client.get_operation` until done (through `ctx.wait`)."""
        from mlplat_plugins.gcp.sdk import GcpApiError, operation_state

        def check() -> tuple[bool, Any]:
            operation = client.get_operation(request={"name": name})
            done, error = operation_state(operation)
            if error is not None:
                raise GcpApiError(f"{what} (operation {name})", _rpc_name(operation.error.code), error)
            return (True, operation) if done else (False, "running")

        return ctx.wait(check, what=what, **self.intervals)


def _rpc_name(code: int) -> str:
    names = {3: "INVALID_ARGUMENT", 5: "NOT_FOUND", 6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED",
             8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 10: "ABORTED", 13: "INTERNAL", 14: "UNAVAILABLE"}
    return names.get(code, f"CODE_{code}")
