"""WebSocket message models (client → server) and the parser that turns text into them.

Every refusal is a ``ProtocolError(reason, message)``; the signalling handler turns it into
``{"type":"error","reason":...,"message":...,"ref":id}`` and keeps the socket open.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_ID_CHARS = 64
MAX_TOKEN_CHARS = 2048
MAX_CANDIDATE_CHARS = 1024
MAX_TIP_ID_CHARS = 64


class ProtocolError(Exception):
    def __init__(self, reason: str, message: str = "", ref: str | None = None):
        super().__init__(message or reason)
        self.reason = reason
        self.message = message or reason
        self.ref = ref


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: Annotated[str, Field(max_length=MAX_ID_CHARS)] | None = None


class Join(_Msg):
    type: Literal["join"]
    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS)]
    room: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    scenario: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    lang: Literal["en", "zh"] | None = None


class Offer(_Msg):
    type: Literal["offer"]
    sdp: Annotated[str, Field(min_length=1)]  # size checked against settings in parse


class IceCandidate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    candidate: Annotated[str, Field(max_length=MAX_CANDIDATE_CHARS)]
    sdpMid: Annotated[str, Field(max_length=32)] | None = None
    sdpMLineIndex: Annotated[int, Field(ge=0, le=64)] | None = None
    usernameFragment: Annotated[str, Field(max_length=256)] | None = None


class Ice(_Msg):
    type: Literal["ice"]
    candidate: IceCandidate | None  # null = end of candidates


class Tip(_Msg):
    type: Literal["tip"]
    text: Annotated[str, Field(min_length=1)]  # length checked against settings in parse


class TipAck(_Msg):
    type: Literal["tip_ack"]
    tip_id: Annotated[str, Field(min_length=1, max_length=MAX_TIP_ID_CHARS)]
    # Optional: perf_counter_ns when the tip was shown (same-machine clients) → one-way latency.
    received_ns: Annotated[int, Field(ge=0)] | None = None


class Whisper(_Msg):
    type: Literal["whisper"]
    on: bool


class Ping(_Msg):
    type: Literal["ping"]
    t: Annotated[float, Field(allow_inf_nan=False)] | int | None = None


class Leave(_Msg):
    type: Literal["leave"]


ClientMessage = Annotated[
    Union[Join, Offer, Ice, Tip, TipAck, Whisper, Ping, Leave], Field(discriminator="type")
]
AnyMessage = Union[Join, Offer, Ice, Tip, TipAck, Whisper, Ping, Leave]
_ADAPTER: TypeAdapter[AnyMessage] = TypeAdapter(ClientMessage)
MESSAGE_TYPES = frozenset({"join", "offer", "ice", "tip", "tip_ack", "whisper", "ping", "leave"})

# Who may send what (after join). Absent type = everyone.
ALLOWED_ROLES: dict[str, frozenset[str]] = {
    "offer": frozenset({"trainee", "streamer", "mentor"}),
    "ice": frozenset({"trainee", "streamer", "mentor"}),
    "tip": frozenset({"mentor"}),
    "tip_ack": frozenset({"streamer"}),
    "whisper": frozenset({"mentor"}),
}


def _limits(settings: Any) -> tuple[int, int, int]:
    """Accept the app Settings or ServerSettings."""
    server = getattr(settings, "server", settings)
    return server.max_ws_message_bytes, server.max_sdp_bytes, server.max_tip_chars


def _ref_of(data: dict[str, Any]) -> str | None:
    ref = data.get("id")
    return ref if isinstance(ref, str) and len(ref) <= MAX_ID_CHARS else None


def message_from_dict(data: dict[str, Any]) -> AnyMessage:
    """Rebuild a message that was already parsed once (a ``model_dump`` sent over the bus)."""
    return _ADAPTER.validate_python(data)


def parse_client_message(raw: str | bytes, settings: Any) -> AnyMessage:
    max_bytes, max_sdp, max_tip = _limits(settings)
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ProtocolError("too_large", f"message is {size} bytes; limit {max_bytes}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}"[:200]) from None
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("not_object", "message must be a JSON object")
    ref = _ref_of(data)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {str(kind)[:40]!r}", ref)
    try:
        msg = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != kind) or "message"
        raise ProtocolError("invalid_field", f"{where}: {first.get('msg', 'invalid')}", ref) from None
    if isinstance(msg, Offer):
        if len(msg.sdp.encode("utf-8")) > max_sdp:
            raise ProtocolError("too_large", f"sdp larger than {max_sdp} bytes", ref)
        if not msg.sdp.startswith("v=0") or "m=" not in msg.sdp:
            raise ProtocolError("bad_sdp", "sdp must start with v=0 and contain a media section", ref)
    if isinstance(msg, Tip) and (len(msg.text) > max_tip or not msg.text.strip()):
        raise ProtocolError("invalid_field", f"text must be 1-{max_tip} non-blank characters", ref)
    if isinstance(msg, Ice) and msg.candidate is not None and msg.candidate.candidate:
        if not msg.candidate.candidate.startswith(("candidate:", "a=candidate:")):
            raise ProtocolError("invalid_field", "candidate must start with 'candidate:'", ref)
        if msg.candidate.sdpMid is None and msg.candidate.sdpMLineIndex is None:
            raise ProtocolError("invalid_field", "candidate needs sdpMid or sdpMLineIndex", ref)
    return msg


def check_role(msg: BaseModel, role: str) -> None:
    kind = getattr(msg, "type", "")
    allowed = ALLOWED_ROLES.get(kind)
    if allowed is not None and role not in allowed:
        raise ProtocolError("forbidden", f"role {role} may not send {kind}", getattr(msg, "id", None))


def error_message(reason: str, message: str, ref: str | None = None) -> dict[str, Any]:
    return {"type": "error", "reason": reason, "message": message, "ref": ref}
