"""Event log and finished session records in SQLite (aiosqlite: queries run on its own thread)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiosqlite

from server.store.common import check_event, check_session, dumps

DB_NAME = "livecoach.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL CHECK (json_valid(data))
);
CREATE INDEX IF NOT EXISTS events_by_session ON events (session_id, id);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    started_at REAL NOT NULL,
    data TEXT NOT NULL CHECK (json_valid(data))
);
CREATE INDEX IF NOT EXISTS sessions_by_time ON sessions (started_at DESC, session_id DESC);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user, started_at DESC, session_id DESC);
"""


class SqliteRecords:
    """``<data_dir>/livecoach.sqlite3`` in WAL mode; opened lazily on first use."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / DB_NAME
        self._db: aiosqlite.Connection | None = None
        self._open_lock = asyncio.Lock()

    async def open(self) -> aiosqlite.Connection:
        if self._db is not None:
            return self._db
        async with self._open_lock:
            if self._db is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = await aiosqlite.connect(self.path)
                try:
                    await db.execute("PRAGMA journal_mode=WAL")
                    await db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
                    await db.executescript(_SCHEMA)
                    await db.commit()
                except BaseException:
                    await db.close()
                    raise
                self._db = db
        return self._db

    async def append_event(self, session_id: str, event: dict[str, Any]) -> str:
        kind = check_event(event)
        data = dumps(event, "event")
        db = await self.open()
        cursor = await db.execute(
            "INSERT INTO events (session_id, type, data) VALUES (?, ?, ?)", (session_id, kind, data)
        )
        await db.commit()
        # Zero-padded so ids also sort as strings.
        return f"{cursor.lastrowid:012d}"

    async def events(self, session_id: str, types: list[str] | None = None) -> list[dict[str, Any]]:
        db = await self.open()
        if types is not None and not types:
            return []
        if types:
            marks = ",".join("?" * len(types))
            sql = f"SELECT data FROM events WHERE session_id = ? AND type IN ({marks}) ORDER BY id"
            params: tuple[Any, ...] = (session_id, *types)
        else:
            sql, params = "SELECT data FROM events WHERE session_id = ? ORDER BY id", (session_id,)
        # All rows in one step: a cursor read in chunks lets a write on this connection (a
        # record replaced as its session ends) land mid-read, and the row came back twice.
        return [json.loads(row[0]) for row in await db.execute_fetchall(sql, params)]

    async def save_session(self, record: dict[str, Any]) -> None:
        session_id, user, started_at = check_session(record)
        data = dumps(record, "session record")
        db = await self.open()
        await db.execute(
            "INSERT OR REPLACE INTO sessions (session_id, user, started_at, data) VALUES (?, ?, ?, ?)",
            (session_id, user, started_at, data),
        )
        await db.commit()

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        db = await self.open()
        async with db.execute("SELECT data FROM sessions WHERE session_id = ?", (session_id,)) as cursor:
            row = await cursor.fetchone()
        return json.loads(row[0]) if row else None

    async def list_sessions(self, user: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        db = await self.open()
        order = "ORDER BY started_at DESC, session_id DESC LIMIT ?"
        params: tuple[str | int, ...]
        if user is None:
            sql, params = f"SELECT data FROM sessions {order}", (limit,)
        else:
            sql, params = f"SELECT data FROM sessions WHERE user = ? {order}", (user, limit)
        # All rows in one step: a cursor read in chunks lets a write on this connection (a
        # record replaced as its session ends) land mid-read, and the row came back twice.
        return [json.loads(row[0]) for row in await db.execute_fetchall(sql, params)]

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()
