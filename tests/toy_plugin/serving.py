"""Toy serving: an endpoint splitting traffic between deployments (one per serving path)."""

from __future__ import annotations

from typing import Any

from provisioner.cloud import content_name
from toy_plugin.base import ToyProvider


class Deployment(ToyProvider):
    """A model on instances; immutable, so a change makes a new one (under a new content name) first."""

    collection = "deployment"
    force_new = frozenset({"base_name", "space", "endpoint", "model", "instance_type", "replicas"})
    replace_mode = "create_before_destroy"

    def name_of(self, inputs: dict[str, Any]) -> str:
        return content_name(inputs["base_name"], inputs)

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"name": obj["name"]}


class Endpoint(ToyProvider):
    """The URL clients call; its traffic weights change in place."""

    collection = "endpoint"
    force_new = frozenset({"name", "space"})

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"https://{obj['name']}.toy.invalid/predict"}
