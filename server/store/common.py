"""Helpers shared by the store backends: validation, JSON encoding, errors."""

from __future__ import annotations

import json
from typing import Any

from redis.exceptions import RedisError

REQUIRED_SESSION_KEYS = ("session_id", "user", "room", "kind", "started_at")


class StoreError(Exception):
    """Bad input to the store (not JSON-able, missing keys)."""


class StoreUnavailable(StoreError):
    """The backing service (Redis) does not answer."""


def dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} is not JSON-serialisable: {exc}") from exc


def check_event(event: Any) -> str:
    """Return the event's type ('' when absent) after checking it is a JSON object."""
    if not isinstance(event, dict):
        raise StoreError(f"event must be a dict, got {type(event).__name__}")
    kind = event.get("type", "")
    return kind if isinstance(kind, str) else str(kind)


def check_session(record: Any) -> tuple[str, str, float]:
    """Validate a session record; return (session_id, user, started_at)."""
    if not isinstance(record, dict):
        raise StoreError(f"session record must be a dict, got {type(record).__name__}")
    missing = [k for k in REQUIRED_SESSION_KEYS if k not in record]
    if missing:
        raise StoreError(f"session record lacks {', '.join(missing)}")
    started_at = record["started_at"]
    if isinstance(started_at, bool) or not isinstance(started_at, (int, float)):
        raise StoreError("session record started_at must be a number (unix seconds)")
    return str(record["session_id"]), str(record["user"]), float(started_at)


def check_ttl(ttl_s: float) -> int:
    """TTL in whole milliseconds (at least 1)."""
    if not ttl_s > 0:
        raise StoreError(f"ttl_s must be > 0, got {ttl_s!r}")
    return max(1, int(round(ttl_s * 1000)))


def presence_entry(user_id: str, info: dict[str, Any]) -> dict[str, Any]:
    # The key the entry is stored under is authoritative for "user".
    return {**info, "user": user_id}


# What a store call raises when its backing service is unreachable: REST answers 503 for these.
STORE_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (StoreUnavailable, RedisError, ConnectionError, TimeoutError)
