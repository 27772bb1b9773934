"""How state backends turn values into JSON text and back; secrets are sealed with AES-GCM on the way in.

A Secret becomes {"$sealed": "v1:<base64 nonce+ciphertext>"}. The key comes from the `mlplat_state_key` hook
(a KMS-style provider) or is derived (scrypt, the state's lineage as salt) from $MLPLAT_STATE_PASSPHRASE.
`cryptography` is imported only when a secret is sealed or opened.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from provisioner.errors import StateError
from provisioner.secrets import Secret, is_secret

PASSPHRASE_ENV = "MLPLAT_STATE_PASSPHRASE"
SEALED = "$sealed"
_encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class StateCodec:
    """JSON with sealed secrets. `key_source()` returns the 32-byte key, or None when none is configured."""

    def __init__(self, key_source: Callable[[], bytes | None] | None = None) -> None:
        self._key_source = key_source
        self._key: bytes | None = None
        self._aead: Any = None

    def dumps(self, value: Any) -> str:
        return _encode(self._seal(value))

    def loads(self, text: str) -> Any:
        value = json.loads(text)
        return self._open(value) if SEALED in text else value

    def require_key(self) -> None:
        """Raise the missing-key error now (before a plan that would need to seal a secret)."""
        self._cipher()

    def _seal(self, value: Any) -> Any:
        if is_secret(value):
            nonce = os.urandom(12)
            sealed = nonce + self._cipher().encrypt(nonce, value.encode(), None)
            return {SEALED: "v1:" + base64.b64encode(sealed).decode()}
        if isinstance(value, dict):
            return {k: self._seal(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._seal(v) for v in value]
        return value

    def _open(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1 and SEALED in value:
                version, _, token = str(value[SEALED]).partition(":")
                if version != "v1":
                    raise StateError(f"a secret in the state is sealed with an unknown scheme {version!r}")
                try:
                    raw = base64.b64decode(token, validate=True)
                except ValueError:  # binascii.Error: the sealed text itself was damaged
                    raise StateError("a secret in the state is damaged (its sealed text is not base64)") from None
                try:
                    return Secret(self._cipher().decrypt(raw[:12], raw[12:], None).decode())
                except Exception as err:  # cryptography's InvalidTag: wrong key or tampered state
                    if isinstance(err, StateError):
                        raise
                    raise StateError("a secret in the state cannot be opened with this key",
                                     hint=f"use the passphrase the state was written with (${PASSPHRASE_ENV})"
                                     ) from None
            return {k: self._open(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._open(v) for v in value]
        return value

    def _cipher(self) -> Any:
        if self._aead is None:
            key = self._key_source() if self._key_source else None
            if key is None:
                raise StateError("the state holds (or is about to hold) a secret, and no key is configured",
                                 hint=f"export {PASSPHRASE_ENV}=<passphrase> (or install a plugin implementing "
                                      "mlplat_state_key); secrets are only ever stored encrypted")
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(key)
        return self._aead


def passphrase_key(salt: str) -> Callable[[], bytes | None]:
    """Key from $MLPLAT_STATE_PASSPHRASE (scrypt, n=2**14), salted with the state's lineage."""
    def derive() -> bytes | None:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if not passphrase:
            return None
        return hashlib.scrypt(passphrase.encode(), salt=salt.encode(), n=2**14, r=8, p=1, dklen=32)

    return derive


PLAIN = StateCodec()
