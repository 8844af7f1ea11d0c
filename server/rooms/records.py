"""The session record of a room: created when the primary joins, merged and closed when it leaves."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from server.store.base import Store
from server.store.common import STORE_OUTAGE_ERRORS

log = logging.getLogger(__name__)


class SessionRecords:
    def __init__(self, store: Store, room_id: str, process_id: str) -> None:
        self.store = store
        self.room_id = room_id
        self.process_id = process_id
        self.session_id: str | None = None
        self.started_at: float | None = None
        self.kind: str | None = None

    def begin(self, role: str) -> str:
        """Synchronous: the session id exists as soon as the primary is a member."""
        self.session_id = uuid.uuid4().hex
        self.started_at = time.time()
        self.kind = "practice" if role == "trainee" else "shadow"
        return self.session_id

    async def save_started(self, user: str, role: str, lang: str, scenario: str | None) -> None:
        record: dict[str, Any] = {
            "session_id": self.session_id, "user": user, "room": self.room_id, "kind": self.kind,
            "started_at": self.started_at, "role": role, "lang": lang, "scenario": scenario,
            "status": "live", "process_id": self.process_id,
        }
        try:
            await self.store.save_session(record)
        except Exception:  # noqa: BLE001 - the live session goes on without its record
            log.exception("room %s: save_session failed", self.room_id)

    def end(self, session_id: str) -> tuple[float | None, str | None]:
        """Detach ``session_id`` (and only it) from the room, synchronously, before any await: a
        primary rejoining meanwhile begins a new session that must keep its own id. Returns the
        ended session's start time and kind for ``save_finished``."""
        if self.session_id != session_id:
            return None, None
        started_at, kind = self.started_at, self.kind
        self.session_id = None
        return started_at, kind

    async def save_finished(self, session_id: str, user: str, reason: str,
                            started_at: float | None, kind: str | None) -> None:
        try:
            # Merge: the media hook may have saved a richer record (report) meanwhile. During a
            # store outage the read fails: save what we know, the store merges it when back.
            try:
                record = await self.store.get_session(session_id) or {}
            except STORE_OUTAGE_ERRORS:
                record = {}
            ended = time.time()
            started = record.get("started_at", started_at)
            record.update(
                session_id=session_id, user=user, room=self.room_id, kind=record.get("kind", kind),
                started_at=started, ended_at=ended, duration_s=round(ended - (started or ended), 3),
                end_reason=reason, status="ended",
            )
            await self.store.save_session(record)
        except Exception:  # noqa: BLE001
            log.exception("room %s: saving the finished session failed", self.room_id)
