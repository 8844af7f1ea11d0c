"""Who is in a room: at most one primary (trainee or streamer), one mentor, any number of qa."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from server.auth import PRIMARY_ROLES, TokenClaims
from server.protocol import ProtocolError
from server.rooms.contracts import ConnRef, Outbox
from server.rooms.peer import PeerSession


@dataclass(eq=False)
class Participant:
    conn: ConnRef
    user: str
    role: str
    lang: str
    scenario: str | None
    peer: PeerSession
    joined_ns: int = field(default_factory=time.perf_counter_ns)
    closed: bool = False

    @property
    def is_primary(self) -> bool:
        return self.role in PRIMARY_ROLES

    def public(self) -> dict[str, str]:
        return {"user": self.user, "role": self.role}


class Membership:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.participants: dict[ConnRef, Participant] = {}

    @property
    def primary(self) -> Participant | None:
        return next((p for p in self.participants.values() if p.is_primary), None)

    @property
    def mentor(self) -> Participant | None:
        return next((p for p in self.participants.values() if p.role == "mentor"), None)

    def check_room_for(self, claims: TokenClaims) -> None:
        """Raise room_full if the role's seat is taken (call and insert with no await between)."""
        primary = self.primary
        if claims.role in PRIMARY_ROLES and primary is not None:
            raise ProtocolError("room_full", f"room already has a {primary.role}")
        if claims.role == "mentor" and self.mentor is not None:
            raise ProtocolError("room_full", "room already has a mentor (1v1)")

    def add(self, p: Participant) -> None:
        self.participants[p.conn] = p

    def discard(self, conn: ConnRef) -> None:
        self.participants.pop(conn, None)

    def get(self, conn: ConnRef) -> Participant | None:
        return self.participants.get(conn)

    def has_user(self, user: str) -> bool:
        return any(p.user == user for p in self.participants.values())

    def public(self) -> list[dict[str, str]]:
        return [p.public() for p in self.participants.values()]

    def peers(self) -> int:
        return sum(1 for p in self.participants.values() if p.peer.pc is not None)

    def broadcast(self, msg: dict[str, Any], exclude: ConnRef | None = None) -> None:
        for p in list(self.participants.values()):
            if p.conn != exclude:
                self.outbox.send(p.conn, msg)

    def __len__(self) -> int:
        return len(self.participants)

    def __contains__(self, conn: object) -> bool:
        return conn in self.participants
