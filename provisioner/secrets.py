"""Secret values: marked where they enter (`${secret:NAME}`, secret-looking `${env:NAME}`), sealed in the state,
masked in every output.

`Secret` is a `str` subclass, so lowering and providers use it like any string; what writes or prints values
asks `is_secret` / uses `mask` on the way out.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "(sensitive)"
#: ${env:NAME} values whose NAME looks like this are secrets too
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL)", re.I)


class Secret(str):
    """A string that must never be printed or written in plaintext."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Secret({MASK})"


def is_secret(value: Any) -> bool:
    return isinstance(value, Secret)


def contains_secret(value: Any) -> bool:
    if isinstance(value, Secret):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_secret(v) for v in value)
    return False


def mask(value: Any) -> Any:
    """A copy of `value` with every Secret replaced by "(sensitive)" (for display and --json output)."""
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask(v) for v in value)
    return value
