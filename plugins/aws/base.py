"""What every aws resource provider shares: clients, tags, names with content hashes, bounded waits."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from provisioner.errors import MlplatError
from provisioner.progress import poll
from provisioner.provider import ResourceProvider

if TYPE_CHECKING:
    from mlplat_plugins.aws.sdk import Clients
    from mlplat_plugins.aws.target import AwsTarget

T = TypeVar("T")
ADDRESS_TAG = "mlplat:address"
STACK_TAG = "mlplat:stack"


class AwsProvider(ResourceProvider):
    def __init__(self, target: AwsTarget) -> None:
        self.target = target
        self.settings = target.settings

    @property
    def aws(self) -> Clients:
        return self.target.clients()

    def tags(self, address: str) -> list[dict[str, str]]:
        """Every object is tagged with its stack and address, so a list call can prove what exists."""
        return [{"Key": STACK_TAG, "Value": self.target.context.stack_name}, {"Key": ADDRESS_TAG, "Value": address}]

    def wait(self, check: Callable[[], tuple[bool, T]], what: str) -> T:
        return poll(check, what=what, timeout=self.settings.wait_timeout_s, interval=self.settings.poll_interval_s,
                    max_interval=max(self.settings.poll_interval_s, 60.0))

    def wait_in_service(self, describe: Callable[[], dict[str, Any] | None], what: str, phase: str, *,
                        status_key: str, reason_key: str, failed: tuple[str, ...] = ("Failed",)) -> dict[str, Any]:
        """Poll `describe` until its status is InService; fail fast on a failed status or a vanished object."""
        def check() -> tuple[bool, Any]:
            seen = describe()
            if seen is None:
                raise MlplatError(f"{what} disappeared while {phase.lower()}")
            status = seen[status_key]
            if status in failed:
                raise MlplatError(f"{what} is {status}: {seen.get(reason_key) or 'no reason given'}")
            return status == "InService", seen if status == "InService" else status

        return self.wait(check, f"{what} {phase} → InService")

    def wait_gone(self, describe: Callable[[], dict[str, Any] | None], what: str) -> None:
        self.wait(lambda: (describe() is None, "Deleting"), f"{what} deleted")


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
