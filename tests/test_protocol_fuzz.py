"""Property-based fuzz of the signalling parser: any input is a message or a ProtocolError.

Hypothesis builds both raw garbage and near-valid messages (every known type with fields of the
wrong type, size or shape). Nothing may raise anything but ProtocolError, and every error has a
documented reason.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.protocol import MESSAGE_TYPES, ProtocolError, parse_client_message
from server.settings import load_settings

SETTINGS = load_settings()
REASONS = {"too_large", "bad_json", "not_object", "unknown_type", "invalid_field", "bad_sdp"}

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=80))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=20)
field_names = st.sampled_from(["token", "sdp", "candidate", "text", "id", "ref", "on", "room", "role",
                               "user", "scenario", "sdpMid", "sdpMLineIndex", "type", "client_ns"])
near_valid = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(sorted(MESSAGE_TYPES) + ["", "JOIN", "tip ", "unknown"]),
    st.dictionaries(field_names, json_value, max_size=5),
)


def check(raw: str | bytes) -> None:
    try:
        parse_client_message(raw, SETTINGS)
    except ProtocolError as exc:
        assert exc.reason in REASONS, exc.reason


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid)
def test_near_valid_messages(message: dict[str, Any]) -> None:
    check(json.dumps(message))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), json_value.map(json.dumps)))
def test_raw_garbage(raw: str | bytes) -> None:
    check(raw)


def test_deep_nesting_and_huge_frames() -> None:
    check("[" * 100_000 + "]" * 100_000)
    check('{"type": "tip", "text": "' + "x" * 200_000 + '"}')
    check(b"\xff\xfe" * 1000)
