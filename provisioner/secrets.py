"""Secret values: marked where they enter (`${secret:NAME}`, secret-looking `${env:NAME}`), sealed in the state,
masked in every output.

`Secret` is a `str` subclass, so lowering and providers use it like any string. Copies lose the subclass
(pydantic returns plain `str`), so every secret value is also remembered for this process: `is_secret`
recognises a plain string that is, or contains, one of them, and `redact` scrubs them from free text (errors,
event messages). What writes or prints values asks `is_secret` / uses `mask` on the way out.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "(sensitive)"
#: ${env:NAME} values whose NAME looks like this are secrets too
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE|CREDENTIAL)", re.I)


#: values shorter than this are masked only where they are a whole value, never inside other text
MIN_EMBEDDED = 6
_known: set[str] = set()


class Secret(str):
    """A string that must never be printed or written in plaintext."""

    __slots__ = ()

    def __new__(cls, value: str) -> Secret:
        secret = super().__new__(cls, value)
        if value:
            _known.add(str(value))
        return secret

    def __repr__(self) -> str:
        return f"Secret({MASK})"


def is_secret(value: Any) -> bool:
    if isinstance(value, Secret):
        return True
    if not isinstance(value, str) or not _known:
        return False
    return value in _known or any(k in value for k in _known if len(k) >= MIN_EMBEDDED)


def any_known() -> bool:
    """Whether this process has seen a secret value: when not, there is nothing to mask (a fast path for output)."""
    return bool(_known)


def redact(text: str) -> str:
    """Free text (an error, an event message) with every known secret replaced by "(sensitive)"."""
    for known in sorted(_known, key=len, reverse=True):
        if len(known) >= MIN_EMBEDDED or text == known:
            text = text.replace(known, MASK)
    return text


def contains_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_secret(v) for v in value)
    return False


def mask(value: Any) -> Any:
    """A copy of `value` with every Secret replaced by "(sensitive)" (for display and --json output)."""
    if is_secret(value):
        return MASK
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, tuple):
        return tuple(mask(v) for v in value)
    return value
