"""Store and Bus protocols: the only way server code touches shared state.

Memory+SQLite (default, one process) and Redis (several processes) implement both.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol

BusHandler = Callable[[dict[str, Any]], Awaitable[None]]


class Store(Protocol):
    # ---- rooms: a room's media lives on exactly one process, its owner -------------------
    async def claim_room(self, room_id: str, process_id: str, ttl_s: float) -> str:
        """Make ``process_id`` the owner if the room has none; return the owner either way."""
        ...

    async def room_owner(self, room_id: str) -> str | None: ...

    async def release_room(self, room_id: str, process_id: str) -> None:
        """Forget the room if ``process_id`` still owns it."""
        ...

    async def list_rooms(self) -> list[str]: ...

    # ---- presence: who is in a room (kept alive by the owner's heartbeat) ----------------
    async def set_presence(self, room_id: str, user_id: str, info: dict[str, Any], ttl_s: float) -> None: ...

    async def clear_presence(self, room_id: str, user_id: str) -> None: ...

    async def presence(self, room_id: str) -> list[dict[str, Any]]: ...

    async def heartbeat(self, process_id: str, room_ids: list[str], ttl_s: float) -> None:
        """Refresh the process's liveness and the TTL of the rooms (and their presence) it owns."""
        ...

    # ---- per-process metrics snapshots (the summed /metrics?scope=cluster view) ---------------
    async def publish_metrics(self, process_id: str, text: str, ttl_s: float) -> None:
        """Store this process's exposition text; it vanishes ``ttl_s`` after the last publish."""
        ...

    async def process_metrics(self) -> dict[str, str]:
        """The live processes' latest exposition texts, by process id."""
        ...

    # ---- session event log ----------------------------------------------------------------
    async def append_event(self, session_id: str, event: dict[str, Any]) -> str:
        """Append one JSON-able event; returns its id (monotonic within the session)."""
        ...

    async def events(self, session_id: str, types: list[str] | None = None) -> list[dict[str, Any]]: ...

    # ---- finished session records (reports, progress) -------------------------------------
    async def save_session(self, record: dict[str, Any]) -> None:
        """Insert or replace; ``record`` has at least session_id, user, room, kind, started_at (unix s)."""
        ...

    async def get_session(self, session_id: str) -> dict[str, Any] | None: ...

    async def list_sessions(self, user: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        ...

    async def healthy(self) -> bool:
        """Whether the backing service answers now (for /healthz; never raises)."""
        ...

    async def close(self) -> None: ...


class Bus(Protocol):
    """Point-to-point messages between server processes, addressed by process id."""

    async def publish(self, process_id: str, message: dict[str, Any]) -> None: ...

    async def subscribe(self, process_id: str, handler: BusHandler) -> None:
        """Deliver every message published to ``process_id`` to ``handler`` (one owned task)."""
        ...

    async def close(self) -> None: ...
