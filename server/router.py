"""Cross-process delivery between WebSocket connections and room engines.

A WebSocket may live on any process; a room's engine lives on its owner (``store.claim_room``
on join). Local owner → direct call. Remote owner → ``bus.publish(owner, op)``; the owner's
replies travel back with ``bus.publish(conn process, deliver)``. In memory mode every room is
local, so only the direct path runs.

Bus message kinds: ``op`` (conn → owner: join / msg / close), ``deliver`` and ``drop``
(owner → conn process).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from coach.tasks import TaskOwner
from server.auth import TokenClaims
from server.outbox import ConnectionOutbox, LocalConnection
from server.protocol import AnyMessage, Join, ProtocolError, error_message, message_from_dict
from server.rooms import ConnRef, RoomManager
from server.settings import Settings
from server.store.base import Bus, Store

log = logging.getLogger(__name__)

INBOX_SIZE = 256  # per remote connection, on the owner


class Router:
    def __init__(self, settings: Settings, store: Store, bus: Bus, manager: RoomManager,
                 outbox: ConnectionOutbox) -> None:
        self.settings = settings
        self.process_id = outbox.process_id
        self.store = store
        self.bus = bus
        self.manager = manager
        self.outbox = outbox
        # Owner side of connections on other processes: their ops run in order, one at a time.
        self._inboxes: dict[ConnRef, asyncio.Queue[dict[str, Any]]] = {}
        self._tasks = TaskOwner(f"router:{self.process_id}")

    @property
    def local(self) -> dict[str, LocalConnection]:
        return self.outbox.local

    async def start(self) -> None:
        await self.bus.subscribe(self.process_id, self._on_bus)
        self._tasks.spawn(self._heartbeat_loop(), f"heartbeat:{self.process_id}")

    async def close(self) -> None:
        self._inboxes.clear()
        await self._tasks.close()

    # ---- connection side ---------------------------------------------------------------------
    def ref(self, conn: LocalConnection) -> ConnRef:
        return self.outbox.ref(conn)

    async def join(self, conn: LocalConnection, claims: TokenClaims, msg: Join) -> None:
        ttl = self.settings.server.presence_ttl_s
        conn.owner = await self.store.claim_room(claims.room, self.process_id, ttl)
        await self._dispatch(conn, {"op": "join", "claims": claims.as_dict(), "msg": msg.model_dump()}, msg)

    async def forward(self, conn: LocalConnection, msg: Any) -> None:
        await self._dispatch(conn, {"op": "msg", "msg": msg.model_dump()}, msg)

    async def closed(self, conn: LocalConnection, reason: str = "disconnected") -> None:
        self.local.pop(conn.conn_id, None)
        if conn.owner is not None:
            await self._dispatch(conn, {"op": "close", "reason": reason}, None)

    async def _dispatch(self, conn: LocalConnection, op: dict[str, Any], parsed: Any) -> None:
        if conn.owner == self.process_id:
            await self._execute(self.ref(conn), op, parsed)
            return
        op = {"kind": "op", "conn": list(self.ref(conn)), **op}
        try:
            await self.bus.publish(str(conn.owner), op)
        except Exception as exc:  # noqa: BLE001
            log.warning("publish to owner %s failed: %s", conn.owner, exc)
            conn.send(error_message("room_unavailable", "the room's server does not answer",
                                    getattr(parsed, "id", None)))

    # ---- owner side -----------------------------------------------------------------------
    async def _execute(self, conn: ConnRef, op: dict[str, Any], parsed: Any = None) -> None:
        kind = op.get("op")
        try:
            if kind == "close":
                await self.manager.leave(conn, op.get("reason", "disconnected"))
                return
            msg: AnyMessage = parsed if parsed is not None else message_from_dict(op["msg"])
            if isinstance(msg, Join):
                claims = TokenClaims(**op["claims"])
                await self.manager.join(conn, claims, msg.lang, msg.scenario, msg.id)
            elif msg.type == "leave":
                await self.manager.leave(conn, "left")
                self.drop(conn, 1000, "left")
            else:
                await self.manager.handle(conn, msg)
        except ProtocolError as exc:
            err = error_message(exc.reason, exc.message, exc.ref)
            if kind == "join":
                err["_join_failed"] = True  # stripped by the connection; lets it try join again
            self.send(conn, err)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad op must not take the room down
            log.exception("room op %s from %s failed", kind, conn)
            self.send(conn, error_message("internal", "server error handling the message", None))

    def send(self, conn: ConnRef, msg: dict[str, Any]) -> None:
        self.outbox.send(conn, msg)

    def drop(self, conn: ConnRef, code: int, reason: str) -> None:
        self.outbox.drop(conn, code, reason)

    # ---- bus -----------------------------------------------------------------------------------
    async def _on_bus(self, message: dict[str, Any]) -> None:
        kind = message.get("kind")
        if kind == "op":
            conn = (str(message["conn"][0]), str(message["conn"][1]))
            inbox = self._inboxes.get(conn)
            if inbox is None:
                if message.get("op") == "close":
                    await self.manager.leave(conn, message.get("reason", "disconnected"))
                    return
                if self._tasks.closed:
                    return
                inbox = self._inboxes[conn] = asyncio.Queue(INBOX_SIZE)
                self._tasks.spawn(self._run_inbox(conn, inbox), f"inbox:{conn[1]}")
            try:
                inbox.put_nowait(message)
            except asyncio.QueueFull:
                log.error("inbox for %s full; dropping connection", conn)
                self.drop(conn, 1008, "too_many_messages")
        elif kind == "deliver":
            self.outbox.deliver_local(str(message.get("conn")), message["msg"])
        elif kind == "drop":
            self.outbox.drop_local(str(message.get("conn")), int(message.get("code", 1000)),
                                   str(message.get("reason", "")))

    async def _run_inbox(self, conn: ConnRef, inbox: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            op = await inbox.get()
            await self._execute(conn, op)
            if op.get("op") == "close":
                self._inboxes.pop(conn, None)
                return

    # ---- liveness --------------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        ttl = self.settings.server.presence_ttl_s
        await self._publish_metrics(ttl)  # in the summed view from the start
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                rooms = list(self.manager.rooms)
                await self.store.heartbeat(self.process_id, rooms, ttl)
                await self._publish_metrics(ttl)
                for room_id in rooms:  # expired during a stall: take it back
                    if await self.store.room_owner(room_id) is None:
                        await self.store.claim_room(room_id, self.process_id, ttl)
                await self._check_remote_owners()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("heartbeat failed: %s", exc)

    async def _publish_metrics(self, ttl_s: float) -> None:
        """This process's snapshot for the summed /metrics?scope=cluster view (any worker serves it)."""
        try:
            await self.store.publish_metrics(self.process_id, self.manager.metrics.render().decode(), ttl_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the view goes stale; the live session does not care
            log.warning("metrics snapshot not published: %s", exc)

    async def _check_remote_owners(self) -> None:
        """Connections whose room owner vanished get told and closed, so clients can rejoin."""
        for conn in list(self.local.values()):
            if conn.owner is None or conn.owner == self.process_id or conn.claims is None:
                continue
            if await self.store.room_owner(conn.claims.room) != conn.owner:
                conn.send(error_message("room_lost", "the room's server went away; join again", None))
                conn.drop(1012, "room_lost")
