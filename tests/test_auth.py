"""Join tokens: signing, verification, tampering, expiry, wrong secret."""

from __future__ import annotations

import base64
import json

import pytest

from server.auth import ROLES, TokenError, issue_token, verify_token

SECRET = "test-secret"


def test_roundtrip_every_role() -> None:
    for role in ROLES:
        token = issue_token(SECRET, "room-1", role, "alice", ttl_s=60, now=1000.0)
        claims = verify_token(SECRET, token, now=1030.0)
        assert (claims.room, claims.role, claims.user) == ("room-1", role, "alice")
        assert claims.exp == pytest.approx(1060.0)


def test_expired_token() -> None:
    token = issue_token(SECRET, "r", "trainee", "u", ttl_s=10, now=1000.0)
    verify_token(SECRET, token, now=1009.9)
    with pytest.raises(TokenError) as err:
        verify_token(SECRET, token, now=1010.0)
    assert err.value.reason == "token_expired"


def test_wrong_secret() -> None:
    token = issue_token(SECRET, "r", "trainee", "u", ttl_s=60)
    with pytest.raises(TokenError) as err:
        verify_token("other-secret", token)
    assert err.value.reason == "bad_token"


def _reencode(claims: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()


def test_tampered_claims_rejected() -> None:
    token = issue_token(SECRET, "r", "trainee", "u", ttl_s=60)
    payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "mentor"  # privilege escalation attempt keeps the old signature
    with pytest.raises(TokenError) as err:
        verify_token(SECRET, f"{_reencode(claims)}.{sig}")
    assert err.value.reason == "bad_token"


def test_tampered_signature_rejected() -> None:
    token = issue_token(SECRET, "r", "trainee", "u", ttl_s=60)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenError):
        verify_token(SECRET, flipped)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "!!!.???", "x" * 5000, ".", "e30.e30"])
def test_garbage_tokens(garbage: str) -> None:
    with pytest.raises(TokenError) as err:
        verify_token(SECRET, garbage)
    assert err.value.reason == "bad_token"


def test_issue_validates_identity() -> None:
    with pytest.raises(ValueError):
        issue_token(SECRET, "r", "admin", "u", ttl_s=60)
    with pytest.raises(ValueError):
        issue_token(SECRET, "bad room", "qa", "u", ttl_s=60)
    with pytest.raises(ValueError):
        issue_token(SECRET, "r", "qa", "", ttl_s=60)
    with pytest.raises(ValueError):
        issue_token(SECRET, "r", "qa", "u", ttl_s=0)
