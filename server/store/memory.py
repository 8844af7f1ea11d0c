"""Single-process store: rooms and presence in dicts with expiry times, records in SQLite, in-process bus.

TTL semantics match the Redis store: a room's owner entry and its presence expire ``ttl_s`` after the
last claim / set_presence / heartbeat that touched them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coach.tasks import TaskOwner
from server.store.base import BusHandler
from server.store.common import StoreError, check_ttl, dumps, presence_entry
from server.store.sqlite_records import SqliteRecords

log = logging.getLogger(__name__)


def _now() -> float:
    return time.monotonic()


@dataclass
class _Room:
    owner: str
    expires_at: float


@dataclass
class _Presence:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    expires_at: float = 0.0


class MemoryStore:
    """Rooms/presence in memory (lost on restart, like expired Redis keys); events + sessions in SQLite."""

    def __init__(self, data_dir: str | Path) -> None:
        self.records = SqliteRecords(data_dir)
        self._rooms: dict[str, _Room] = {}
        self._presence: dict[str, _Presence] = {}
        self._processes: dict[str, float] = {}
        self._metrics: dict[str, tuple[float, str]] = {}  # pid -> (expires_at, exposition text)

    async def healthy(self) -> bool:
        """For /healthz: the in-process store is there as long as the process is."""
        return True

    async def open(self) -> "MemoryStore":
        await self.records.open()
        return self

    # ---- expiry ------------------------------------------------------------------------------
    def _live_room(self, room_id: str) -> _Room | None:
        room = self._rooms.get(room_id)
        if room is not None and room.expires_at <= _now():
            del self._rooms[room_id]
            return None
        return room

    def _live_presence(self, room_id: str) -> _Presence | None:
        entry = self._presence.get(room_id)
        if entry is not None and entry.expires_at <= _now():
            del self._presence[room_id]
            return None
        return entry

    # ---- rooms -------------------------------------------------------------------------------
    async def claim_room(self, room_id: str, process_id: str, ttl_s: float) -> str:
        ttl = check_ttl(ttl_s) / 1000
        room = self._live_room(room_id)
        if room is None:
            room = self._rooms[room_id] = _Room(process_id, _now() + ttl)
        elif room.owner == process_id:
            room.expires_at = _now() + ttl  # re-claim by the owner refreshes, like PEXPIRE in Redis
        return room.owner

    async def room_owner(self, room_id: str) -> str | None:
        room = self._live_room(room_id)
        return room.owner if room else None

    async def release_room(self, room_id: str, process_id: str) -> None:
        room = self._live_room(room_id)
        if room is not None and room.owner == process_id:
            del self._rooms[room_id]
            self._presence.pop(room_id, None)

    async def list_rooms(self) -> list[str]:
        return sorted(r for r in list(self._rooms) if self._live_room(r) is not None)

    # ---- presence ----------------------------------------------------------------------------
    async def set_presence(self, room_id: str, user_id: str, info: dict[str, Any], ttl_s: float) -> None:
        ttl = check_ttl(ttl_s) / 1000
        # Round-trip through JSON: same copying and same errors as the Redis store.
        stored = json.loads(dumps(info, "presence info"))
        if not isinstance(stored, dict):
            raise StoreError("presence info must be a dict")
        entry = self._live_presence(room_id) or self._presence.setdefault(room_id, _Presence())
        entry.users[user_id] = stored
        entry.expires_at = _now() + ttl  # the whole room's presence shares one TTL (a Redis hash)

    async def clear_presence(self, room_id: str, user_id: str) -> None:
        entry = self._live_presence(room_id)
        if entry is not None:
            entry.users.pop(user_id, None)
            if not entry.users:
                del self._presence[room_id]

    async def presence(self, room_id: str) -> list[dict[str, Any]]:
        entry = self._live_presence(room_id)
        if entry is None:
            return []
        return [presence_entry(user, dict(info)) for user, info in sorted(entry.users.items())]

    async def heartbeat(self, process_id: str, room_ids: list[str], ttl_s: float) -> None:
        ttl = check_ttl(ttl_s) / 1000
        expires_at = _now() + ttl
        self._processes[process_id] = expires_at
        for room_id in room_ids:
            room = self._live_room(room_id)
            if room is None or room.owner != process_id:
                continue  # never resurrect or steal a room
            room.expires_at = expires_at
            entry = self._live_presence(room_id)
            if entry is not None:
                entry.expires_at = expires_at

    async def process_alive(self, process_id: str) -> bool:
        expires_at = self._processes.get(process_id)
        if expires_at is None:
            return False
        if expires_at <= _now():
            del self._processes[process_id]
            return False
        return True

    async def publish_metrics(self, process_id: str, text: str, ttl_s: float) -> None:
        self._metrics[process_id] = (_now() + check_ttl(ttl_s) / 1000, text)

    async def process_metrics(self) -> dict[str, str]:
        now = _now()
        for pid in [pid for pid, (expires_at, _) in self._metrics.items() if expires_at <= now]:
            del self._metrics[pid]
        return {pid: text for pid, (_, text) in self._metrics.items()}

    # ---- events and records (SQLite) -----------------------------------------------------------
    async def append_event(self, session_id: str, event: dict[str, Any]) -> str:
        return await self.records.append_event(session_id, event)

    async def events(self, session_id: str, types: list[str] | None = None) -> list[dict[str, Any]]:
        return await self.records.events(session_id, types)

    async def save_session(self, record: dict[str, Any]) -> None:
        await self.records.save_session(record)

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        return await self.records.get_session(session_id)

    async def list_sessions(self, user: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return await self.records.list_sessions(user, limit)

    async def close(self) -> None:
        await self.records.close()


class MemoryHub:
    """Where MemoryBus instances meet. Buses sharing a hub behave like processes sharing Redis."""

    def __init__(self) -> None:
        self.queues: dict[str, asyncio.Queue[str]] = {}


class MemoryBus:
    """In-process bus: per subscribed process id, a bounded queue drained by one owned task.

    Handlers for one process id run one at a time in publish order; an exception is logged and the
    next message is still delivered. A full queue drops the message with an error log rather than
    blocking the publisher (Redis pub/sub never blocks a publisher either).
    """

    def __init__(self, hub: MemoryHub | None = None, queue_size: int = 1000) -> None:
        self.hub = hub or MemoryHub()
        self._queue_size = queue_size
        self._subscribed: set[str] = set()
        self._tasks = TaskOwner("memory-bus")
        self._handlers: dict[str, BusHandler] = {}
        self.dropped = 0
        self._closed = False

    async def publish(self, process_id: str, message: dict[str, Any]) -> None:
        if not isinstance(message, dict):
            raise StoreError(f"bus message must be a dict, got {type(message).__name__}")
        raw = dumps(message, "bus message")
        queue = self.hub.queues.get(process_id)
        if queue is None:
            log.debug("bus: no subscriber for %s, message dropped", process_id)
            return
        try:
            queue.put_nowait(raw)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("bus: queue for %s is full, message dropped", process_id)

    async def subscribe(self, process_id: str, handler: BusHandler) -> None:
        if self._closed:
            raise StoreError("bus is closed")
        self._handlers[process_id] = handler  # a second subscribe replaces the handler
        if process_id in self._subscribed:
            return
        if process_id in self.hub.queues:
            raise StoreError(f"process id {process_id} is already subscribed on this hub")
        queue: asyncio.Queue[str] = asyncio.Queue(self._queue_size)
        self.hub.queues[process_id] = queue
        self._subscribed.add(process_id)
        self._tasks.spawn(self._drain(process_id, queue), f"bus:{process_id}")

    async def _drain(self, process_id: str, queue: asyncio.Queue[str]) -> None:
        while True:
            raw = await queue.get()
            try:
                await self._handlers[process_id](json.loads(raw))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus handler for %s failed", process_id)

    async def close(self) -> None:
        self._closed = True
        for process_id in self._subscribed:
            self.hub.queues.pop(process_id, None)
        self._subscribed.clear()
        await self._tasks.close()
