"""OAuth 2.0 for the fake: a service account key the tests' Application Default Credentials file names, the token
endpoint its signed JWT is exchanged at (RFC 7523, what google-auth's service_account.Credentials does), and the
check that each API call carries a token minted here or a JWT self-signed by that key (what google-auth sends when
a client asks for self-signed JWT access)."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from gcp_fake import ApiError, Response

if TYPE_CHECKING:
    from gcp_fake import GcpFake, Request

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def register(fake: GcpFake) -> None:
    fake.keys = {}  # type: ignore[attr-defined]  # private_key_id -> public key
    fake.route("POST", r"/token", "Token", _token)


def write_adc(fake: GcpFake, directory: Path) -> Path:
    """A service account key file (the ADC file GOOGLE_APPLICATION_CREDENTIALS names) whose token_uri is this
    server; its public key is registered so the server can check signatures."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    fake.keys[key_id] = key.public_key()  # type: ignore[attr-defined]
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    email = f"mlplat-tests@{fake.project}.iam.gserviceaccount.com"
    info = {"type": "service_account", "project_id": fake.project, "private_key_id": key_id, "private_key": pem,
            "client_email": email, "client_id": "100000000000000000001", "token_uri": f"{fake.url}/token",
            "universe_domain": "googleapis.com"}
    path = directory / "adc.json"
    path.write_text(json.dumps(info))
    return path


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verified_jwt(fake: GcpFake, token: str) -> dict[str, Any] | None:
    """The claims of a JWT signed (RS256) by a registered key, else None."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
        public = fake.keys.get(header.get("kid"))  # type: ignore[attr-defined]
        if public is None or header.get("alg") != "RS256":
            return None
        public.verify(_b64decode(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except (ValueError, InvalidSignature):
        return None
    return claims


def _token(fake: GcpFake, request: Request) -> Response:
    form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
    if form.get("grant_type") != JWT_BEARER:
        return Response(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type."})
    claims = verified_jwt(fake, form.get("assertion", ""))
    # google-auth addresses the assertion to Google's token endpoint whatever the key file's token_uri says
    if claims is None or claims.get("aud") not in (f"{fake.url}/token", "https://oauth2.googleapis.com/token"):
        return Response(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    token = "ya29.fake-" + secrets.token_urlsafe(24)
    fake.tokens.add(token)
    return Response(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})


def authorized(fake: GcpFake, bearer: str) -> bool:
    return bearer in fake.tokens or verified_jwt(fake, bearer) is not None


__all__ = ["ApiError", "authorized", "register", "write_adc"]
