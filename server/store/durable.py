"""Writes that outlive a store outage: spooled on local disk, replayed in order until stored.

Wraps the Redis store. An event append or a session save that fails because Redis is unreachable
goes to a small SQLite spool under ``data_dir``; while anything is spooled, later writes queue
behind it (so a session's events stay in order), and one owned task replays the spool with
backoff. A spooled session save is replayed as a merge into whatever record the store has then,
so a record finished during the outage keeps what was saved before it. The spool survives a
restart: a process that starts with rows in it replays them. Several processes on one data folder
share the spool; a row is applied and deleted under SQLite's write lock, so it is replayed once.
Reads are not spooled: during an outage they fail, and REST answers 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiosqlite

from coach.tasks import TaskOwner
from server.store.base import Store
from server.store.common import STORE_OUTAGE_ERRORS

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


class DurableWrites:
    """A ``Store`` whose ``append_event`` / ``save_session`` never lose data to an outage."""

    def __init__(self, inner: Store, spool_path: Path) -> None:
        self.inner = inner
        self.spool_path = spool_path
        self._db: aiosqlite.Connection | None = None
        self._pending = 0
        self._spooled_seq = 0
        self._wake = asyncio.Event()
        # One write at a time: a write still waiting on an unreachable store must reach the spool
        # before any later write does, or a replay could apply an old record over a newer one.
        self._write_lock = asyncio.Lock()
        self._tasks = TaskOwner("store-spool")

    async def open(self) -> DurableWrites:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: replay takes the write lock itself (BEGIN IMMEDIATE) around each row.
        self._db = await aiosqlite.connect(self.spool_path, isolation_level=None, timeout=30)
        await self._db.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                               "op TEXT NOT NULL, session_id TEXT NOT NULL, payload TEXT NOT NULL)")
        async with self._db.execute("SELECT COUNT(*) FROM spool") as cursor:
            row = await cursor.fetchone()
        self._pending = int(row[0]) if row else 0
        if self._pending:
            log.warning("store spool holds %d write(s) from before: replaying", self._pending)
        self._tasks.spawn(self._replay(), "store-spool-replay")
        self._wake.set()
        return self

    @property
    def spooled(self) -> int:
        """Writes waiting for the store (health and tests)."""
        return self._pending

    # ---- the two writes that must not be lost -------------------------------------------------
    async def append_event(self, session_id: str, event: dict[str, Any]) -> str:
        async with self._write_lock:
            if not self._pending:
                try:
                    return await self.inner.append_event(session_id, event)
                except STORE_OUTAGE_ERRORS as exc:
                    log.warning("store unreachable (%s): spooling writes until it answers", type(exc).__name__)
            return await self._spool("event", session_id, event)

    async def save_session(self, record: dict[str, Any]) -> None:
        async with self._write_lock:
            if not self._pending:
                try:
                    await self.inner.save_session(record)
                    return
                except STORE_OUTAGE_ERRORS as exc:
                    log.warning("store unreachable (%s): spooling writes until it answers", type(exc).__name__)
            await self._spool("merge", str(record["session_id"]), record)

    async def _spool(self, op: str, session_id: str, payload: dict[str, Any]) -> str:
        assert self._db is not None, "open() first"
        await self._db.execute("INSERT INTO spool (op, session_id, payload) VALUES (?, ?, ?)",
                               (op, session_id, json.dumps(payload, default=str)))
        self._pending += 1
        self._spooled_seq += 1
        self._wake.set()
        return f"spooled-{self._spooled_seq}"

    async def _replay(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                async with self._write_lock:  # no direct write may land after a newer replayed one
                    replayed = await self._replay_one()
                if replayed:
                    delay = RETRY_FIRST_S
                    continue
                if not self._pending:
                    log.warning("store spool replayed: the store has every write again")
                    break
                await asyncio.sleep(delay)  # the store is still away: back off
                delay = min(RETRY_MAX_S, delay * 2)

    async def _replay_one(self) -> bool:
        """Apply and delete the oldest row under the write lock. False: the store is away, or
        the spool is empty (``_pending`` is then 0)."""
        assert self._db is not None
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            row = await self._oldest()
            if row is None:
                self._pending = 0
                await self._db.execute("COMMIT")
                return False
            row_id, op, session_id, payload = row
            try:
                await self._apply(op, session_id, json.loads(payload))
            except STORE_OUTAGE_ERRORS:
                await self._db.execute("ROLLBACK")
                return False
            except Exception:  # noqa: BLE001 - a write the store refuses for good is logged, not retried
                log.exception("store spool: dropping a %s write for session %s", op, session_id)
            await self._db.execute("DELETE FROM spool WHERE id = ?", (row_id,))
            await self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                await self._db.execute("ROLLBACK")
            raise
        self._pending = max(0, self._pending - 1)
        return True

    async def _oldest(self) -> tuple[int, str, str, str] | None:
        assert self._db is not None
        async with self._db.execute("SELECT id, op, session_id, payload FROM spool ORDER BY id LIMIT 1") as cursor:
            row = await cursor.fetchone()
        return (int(row[0]), str(row[1]), str(row[2]), str(row[3])) if row else None

    async def _apply(self, op: str, session_id: str, payload: dict[str, Any]) -> None:
        if op == "event":
            await self.inner.append_event(session_id, payload)
            return
        current = await self.inner.get_session(session_id) or {}
        await self.inner.save_session({**current, **payload})

    # ---- everything else goes straight through ------------------------------------------------
    async def claim_room(self, room_id: str, process_id: str, ttl_s: float) -> str:
        return await self.inner.claim_room(room_id, process_id, ttl_s)

    async def room_owner(self, room_id: str) -> str | None:
        return await self.inner.room_owner(room_id)

    async def release_room(self, room_id: str, process_id: str) -> None:
        await self.inner.release_room(room_id, process_id)

    async def list_rooms(self) -> list[str]:
        return await self.inner.list_rooms()

    async def set_presence(self, room_id: str, user_id: str, info: dict[str, Any], ttl_s: float) -> None:
        await self.inner.set_presence(room_id, user_id, info, ttl_s)

    async def clear_presence(self, room_id: str, user_id: str) -> None:
        await self.inner.clear_presence(room_id, user_id)

    async def presence(self, room_id: str) -> list[dict[str, Any]]:
        return await self.inner.presence(room_id)

    async def heartbeat(self, process_id: str, room_ids: list[str], ttl_s: float) -> None:
        await self.inner.heartbeat(process_id, room_ids, ttl_s)

    async def publish_metrics(self, process_id: str, text: str, ttl_s: float) -> None:
        await self.inner.publish_metrics(process_id, text, ttl_s)

    async def process_metrics(self) -> dict[str, str]:
        return await self.inner.process_metrics()

    async def events(self, session_id: str, types: list[str] | None = None) -> list[dict[str, Any]]:
        return await self.inner.events(session_id, types)

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        return await self.inner.get_session(session_id)

    async def list_sessions(self, user: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return await self.inner.list_sessions(user, limit)

    async def healthy(self) -> bool:
        return await self.inner.healthy()

    async def close(self) -> None:
        await self._tasks.close(grace_s=0.0)
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()
        await self.inner.close()
