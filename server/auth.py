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
import math
import re
import time
from dataclasses import dataclass

ROLES = ("trainee", "streamer", "mentor", "qa")
PRIMARY_ROLES = ("trainee", "streamer")
# Room and user ids end up in store keys and URLs: keep them boring.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
MAX_TOKEN_CHARS = 2048
MAX_TTL_S = 30 * 24 * 3600.0  # a token living longer than a month is a mistake or a forgery
CLOCK_SKEW_S = 60.0  # how far in the future an issue time may be (clocks of several servers)
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


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
    """Strict base64url: only the alphabet, no padding, and the one canonical spelling."""
    if not _B64URL.match(text):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))
    if _b64encode(raw) != text:  # unused trailing bits set: another spelling of the same bytes
        raise ValueError("not canonical base64url")
    return raw


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
    if not math.isfinite(ttl_s) or not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl must be a positive number of seconds up to {MAX_TTL_S:.0f}")
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
    if not _B64URL.match(payload) or not _B64URL.match(signature):
        raise TokenError("bad_token", "token is not base64url")
    # Constant time, on the canonical spelling: no other encoding of the signature is accepted,
    # and the comparison never leaks how many characters matched.
    expected = _b64encode(_sign(secret, payload))
    if not hmac.compare_digest(signature.encode("ascii"), expected.encode("ascii")):
        raise TokenError("bad_token", "token signature does not match")
    try:
        claims = json.loads(_b64decode(payload))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise TokenError("bad_token", "token payload is not JSON") from None
    if not isinstance(claims, dict):
        raise TokenError("bad_token", "token payload is not an object")
    try:
        room, role, user = claims["room"], claims["role"], claims["user"]
        exp, iat = float(claims["exp"]), float(claims["iat"])
        validate_identity(room, role, user)
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenError("bad_token", f"token claims invalid: {exc}") from None
    current = time.time() if now is None else now
    if not (math.isfinite(exp) and math.isfinite(iat)) or not 0 < exp - iat <= MAX_TTL_S:
        raise TokenError("bad_token", "token lifetime is not plausible")
    if iat > current + CLOCK_SKEW_S:
        raise TokenError("bad_token", "token issued in the future")
    if current >= exp:
        raise TokenError("token_expired", "token has expired")
    return TokenClaims(room=room, role=role, user=user, exp=exp, iat=iat)
