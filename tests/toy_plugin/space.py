"""The stack's space on the toy cloud: a stack-scoped resource (made first, deleted last)."""

from __future__ import annotations

from typing import Any

from toy_plugin.base import ToyProvider


class Space(ToyProvider):
    collection = "space"
    force_new = frozenset({"name"})

    def outputs(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"name": obj["name"]}
