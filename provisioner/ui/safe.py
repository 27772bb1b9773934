"""What leaves the UI: JSON-able, with every secret masked ("(sensitive)") and every known secret redacted from
free text, as the CLI's --json output is."""

from __future__ import annotations

import json
from typing import Any

from provisioner.graph import to_json
from provisioner.secrets import MASK, any_known, is_secret, mask, redact


def public(value: Any) -> Any:
    """`value` as JSON-able data, secrets masked and free text redacted."""
    value = to_json(value)
    if not any_known():
        return mask(value)  # no secret text seen yet: only Secret objects can be there
    return _redacted(value)


def _redacted(value: Any) -> Any:
    if is_secret(value):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    return json.dumps(public(value), separators=(",", ":"), default=str).encode()
