"""The session's durable event log: one writer task per room appends in order, never blocking emit."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from coach.tasks import TaskOwner
from server.store.base import Store

log = logging.getLogger(__name__)

EVENT_QUEUE_SIZE = 2000
FLUSH_TIMEOUT_S = 3.0


class EventLog:
    def __init__(self, store: Store, room_id: str) -> None:
        self.store = store
        self.room_id = room_id
        self.closed = False
        self.dropped = 0
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._tasks = TaskOwner(f"event-log:{room_id}")
        self._writer = self._tasks.spawn(self._write(), f"room-events:{room_id}")

    def append(self, event: dict[str, Any]) -> None:
        """Queue ``event`` for its session's log; full queue → counted and logged, never blocks."""
        if event.get("session_id") is None or self.closed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("room %s: event log queue full, dropped %s event (%d dropped so far)",
                      self.room_id, event.get("type"), self.dropped)

    async def _write(self) -> None:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            try:
                await self.store.append_event(str(event["session_id"]), event)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad event must not kill the writer
                log.exception("room %s: append_event failed for %s", self.room_id, event.get("type"))

    async def close(self) -> None:
        """Write what is queued (bounded by FLUSH_TIMEOUT_S), then stop."""
        self.closed = True
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:
            self._writer.cancel()
        await self._tasks.close(grace_s=FLUSH_TIMEOUT_S)
