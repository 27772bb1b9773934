"""A target's `timeouts:` setting: how long a create/update/delete may wait on its cloud operation.

    targets:
      aws:
        timeouts: {create: 45m, delete: 20m}          # every kind on this target
        # or per resource kind, which wins over the above:
        timeouts: {create: 30m, aws.endpoint: {create: 90m}}

A value is seconds (a number) or a duration such as 90s, 45m, 2h. Where nothing is set, the provider's own
default for the kind applies, and failing that one hour.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """90, "90s", "45m", "2h" -> seconds; anything else is left for pydantic to reject."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration: write seconds (90) or 90s, 45m, 2h")
        return float(match.group(1)) * _UNIT[match.group(2)]
    return value


#: the JSON Schema (for editors) of what parse_duration accepts
_DURATION_SCHEMA = {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                              {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smh]?\s*$"}]}
Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0), WithJsonSchema(_DURATION_SCHEMA)]


class OperationTimeouts(BaseModel):
    """Longest waits of one resource kind's operations."""

    model_config = ConfigDict(extra="forbid")

    create: Seconds | None = Field(None, description="Longest wait for a create: seconds, or 90s, 45m, 2h")
    update: Seconds | None = Field(None, description="Longest wait for an update: seconds, or 90s, 45m, 2h")
    delete: Seconds | None = Field(None, description="Longest wait for a delete: seconds, or 90s, 45m, 2h")


class Timeouts(OperationTimeouts):
    """Per operation for every kind of a target, and per resource kind (a key with a dot, e.g. aws.endpoint)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, OperationTimeouts]  # type: ignore[assignment]

    def seconds(self, kind: str, op: str) -> float | None:
        per_kind = (self.__pydantic_extra__ or {}).get(kind)
        value = getattr(per_kind, op, None) if per_kind is not None else None
        return value if value is not None else getattr(self, op, None)
