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


# ---- hostile-client findings: forged spellings and implausible lifetimes -------------------


def _sign_claims(claims: dict, secret: str = SECRET) -> str:
    import hashlib
    import hmac

    payload = _reencode(claims)
    sig = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


@pytest.mark.parametrize("mangle", [
    lambda t: t + "==",                      # padding appended to the signature
    lambda t: t.replace(".", ".=", 1),       # padding inserted
    lambda t: t[:-1] + "\n" + t[-1],         # a character base64 decoders skip
    lambda t: t[:10] + "*" + t[10:],         # a non-alphabet character in the payload
    lambda t: t[:-1] + "+",                  # standard-alphabet character instead of base64url
])
def test_non_canonical_spellings_rejected(mangle) -> None:
    token = issue_token(SECRET, "r", "trainee", "u", ttl_s=60)
    forged = mangle(token)
    assert forged != token
    with pytest.raises(TokenError) as err:
        verify_token(SECRET, forged)
    assert err.value.reason == "bad_token"


def test_unused_trailing_bits_rejected() -> None:
    token = issue_token(SECRET, "r", "trainee", "u", ttl_s=60)
    payload, sig = token.split(".")
    # 32 bytes -> 43 chars: the last char carries 2 unused bits; flipping one decodes to the same bytes
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(sig + "=")
    with pytest.raises(TokenError):
        verify_token(SECRET, f"{payload}.{twin}")


@pytest.mark.parametrize("ttl", [float("nan"), float("inf"), -1.0, 0.0, 10 * 365 * 24 * 3600.0])
def test_issue_refuses_implausible_ttl(ttl: float) -> None:
    with pytest.raises(ValueError):
        issue_token(SECRET, "r", "qa", "u", ttl_s=ttl)


@pytest.mark.parametrize("claims", [
    {"room": "r", "role": "qa", "user": "u", "iat": 1000.0, "exp": 1e300},          # absurd exp
    {"room": "r", "role": "qa", "user": "u", "iat": 1000.0, "exp": "Infinity"},     # non-finite
    {"room": "r", "role": "qa", "user": "u", "iat": 5000.0, "exp": 5060.0},         # iat in the future
    {"room": "r", "role": "qa", "user": "u", "exp": 1060.0},                        # no iat
])
def test_forged_but_signed_claims_rejected(claims: dict) -> None:
    with pytest.raises(TokenError) as err:
        verify_token(SECRET, _sign_claims(claims), now=1010.0)
    assert err.value.reason == "bad_token"


def test_small_clock_skew_is_accepted() -> None:
    token = issue_token(SECRET, "r", "qa", "u", ttl_s=60, now=1030.0)
    assert verify_token(SECRET, token, now=1000.0).user == "u"  # issuer's clock 30 s ahead
