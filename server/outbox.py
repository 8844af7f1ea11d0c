"""Delivery to WebSocket connections wherever they live: the room engine's ``Outbox``.

A connection on this process gets the message directly; one on another process gets it through
``bus.publish(its process, deliver|drop)``. Built before the room manager, which sends through it.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from coach.tasks import TaskOwner
from server.auth import TokenClaims
from server.rooms.contracts import ConnRef
from server.store.base import Bus

log = logging.getLogger(__name__)

PUBLISH_DRAIN_S = 1.0


class LocalConnection(Protocol):
    conn_id: str
    claims: TokenClaims | None
    owner: str | None

    def send(self, msg: dict[str, Any]) -> None: ...

    def drop(self, code: int, reason: str) -> None: ...


class ConnectionOutbox:
    def __init__(self, process_id: str, bus: Bus) -> None:
        self.process_id = process_id
        self.bus = bus
        self.local: dict[str, LocalConnection] = {}
        self._publishes = TaskOwner(f"outbox:{process_id}")

    def ref(self, conn: LocalConnection) -> ConnRef:
        return (self.process_id, conn.conn_id)

    def send(self, conn: ConnRef, msg: dict[str, Any]) -> None:
        if conn[0] == self.process_id:
            self.deliver_local(conn[1], msg)
            return
        self._publish(conn[0], {"kind": "deliver", "conn": conn[1], "msg": msg})

    def drop(self, conn: ConnRef, code: int, reason: str) -> None:
        if conn[0] == self.process_id:
            self.drop_local(conn[1], code, reason)
            return
        self._publish(conn[0], {"kind": "drop", "conn": conn[1], "code": code, "reason": reason})

    def deliver_local(self, conn_id: str, msg: dict[str, Any]) -> None:
        local = self.local.get(conn_id)
        if local is not None:
            local.send(msg)

    def drop_local(self, conn_id: str, code: int, reason: str) -> None:
        local = self.local.get(conn_id)
        if local is not None:
            local.drop(code, reason)

    def _publish(self, process_id: str, message: dict[str, Any]) -> None:
        # Outbox calls are synchronous (emit never blocks); the publish is a short owned task.
        if self._publishes.closed:
            return
        self._publishes.spawn(self._publish_now(process_id, message), f"publish:{process_id}")

    async def _publish_now(self, process_id: str, message: dict[str, Any]) -> None:
        try:
            await self.bus.publish(process_id, message)
        except Exception as exc:  # noqa: BLE001
            log.warning("bus publish to %s failed: %s", process_id, exc)

    async def close(self) -> None:
        """Let publishes in flight finish (briefly), cancel the rest."""
        await self._publishes.close(grace_s=PUBLISH_DRAIN_S)
