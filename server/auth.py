"""HMAC-signed, expiring join tokens.

Format: ``base64url(json claims) + "." + base64url(HMAC-SHA256(secret, first part))``.
Stateless, so every server process that shares the secret can verify any token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass

ROLES = ("trainee", "streamer", "mentor", "qa")
PRIMARY_ROLES = ("trainee", "streamer")
# Room and user ids end up in store keys and URLs: keep them boring.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
MAX_TOKEN_CHARS = 2048


class TokenError(Exception):
    """Token refused; ``reason`` is ``bad_token`` or ``token_expired``."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason


@dataclass(frozen=True, slots=True)
class TokenClaims:
    room: str
    role: str
    user: str
    exp: float  # unix seconds
    iat: float

    def as_dict(self) -> dict[str, object]:
        return {"room": self.room, "role": self.role, "user": self.user, "exp": self.exp, "iat": self.iat}


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _sign(secret: str, payload: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), payload.encode("ascii"), hashlib.sha256).digest()


def validate_identity(room: str, role: str, user: str) -> None:
    """Raise ValueError when room/role/user are not acceptable token claims."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not isinstance(room, str) or not ID_PATTERN.match(room):
        raise ValueError("room must be 1-64 chars of A-Z a-z 0-9 _ . : @ -")
    if not isinstance(user, str) or not ID_PATTERN.match(user):
        raise ValueError("user must be 1-64 chars of A-Z a-z 0-9 _ . : @ -")


def issue_token(secret: str, room: str, role: str, user: str, ttl_s: float, now: float | None = None) -> str:
    validate_identity(room, role, user)
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    issued = time.time() if now is None else now
    claims = {"room": room, "role": role, "user": user, "iat": round(issued, 3), "exp": round(issued + ttl_s, 3)}
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    return f"{payload}.{_b64encode(_sign(secret, payload))}"


def verify_token(secret: str, token: str, now: float | None = None) -> TokenClaims:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("bad_token", "token missing or too long")
    parts = token.split(".")
    if len(parts) != 2:
        raise TokenError("bad_token", "token is not payload.signature")
    payload, signature = parts
    try:
        given = _b64decode(signature)
        expected = _sign(secret, payload)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise TokenError("bad_token", "token is not base64url") from None
    # Constant-time: never leak how many signature bytes matched.
    if not hmac.compare_digest(given, expected):
        raise TokenError("bad_token", "token signature does not match")
    try:
        claims = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenError("bad_token", "token payload is not JSON") from None
    if not isinstance(claims, dict):
        raise TokenError("bad_token", "token payload is not an object")
    try:
        room, role, user = claims["room"], claims["role"], claims["user"]
        exp, iat = float(claims["exp"]), float(claims.get("iat", 0.0))
        validate_identity(room, role, user)
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError("bad_token", f"token claims invalid: {exc}") from None
    current = time.time() if now is None else now
    if current >= exp:
        raise TokenError("token_expired", "token has expired")
    return TokenClaims(room=room, role=role, user=user, exp=exp, iat=iat)
