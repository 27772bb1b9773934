"""Toy storage: nas shares."""

from __future__ import annotations

from typing import Any

from toy_plugin.base import ToyProvider


class Share(ToyProvider):
    collection = "share"
    force_new = frozenset({"name", "space"})

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"id": obj["name"], "export": f"toy-nfs://{obj['name']}"}
