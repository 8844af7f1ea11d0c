"""All rooms this process owns. Every public method takes a connection reference."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from coach.tasks import TaskOwner
from server.admission import Admission, LoadMonitor
from server.auth import PRIMARY_ROLES, TokenClaims
from server.metrics import Metrics
from server.protocol import AnyMessage, Ice, Offer, ProtocolError, Tip, TipAck, Whisper
from server.rooms.contracts import ConnRef, MediaHooks, Outbox, PeerCount, RoomServices
from server.rooms.membership import Participant
from server.rooms.room import Room
from server.settings import Settings
from server.store.base import Store

log = logging.getLogger(__name__)

Reply = dict[str, Any] | None
Handler = Callable[[Room, Participant, Any], Awaitable[Reply]]


async def _offer(room: Room, p: Participant, msg: Offer) -> Reply:
    return await room.offer(p, msg)


async def _ice(room: Room, p: Participant, msg: Ice) -> Reply:
    await room.ice(p, msg)
    return None


async def _tip(room: Room, p: Participant, msg: Tip) -> Reply:
    return room.tip(p, msg)


async def _tip_ack(room: Room, p: Participant, msg: TipAck) -> Reply:
    room.tip_ack(p, msg)
    return None


async def _whisper(room: Room, p: Participant, msg: Whisper) -> Reply:
    room.whisper(p, msg)
    return None


# Post-join messages the room engine handles, by message type (join/leave/ping: router, signalling).
HANDLERS: dict[str, Handler] = {
    "offer": _offer,
    "ice": _ice,
    "tip": _tip,
    "tip_ack": _tip_ack,
    "whisper": _whisper,
}


class RoomManager:
    def __init__(self, settings: Settings, store: Store, metrics: Metrics, hooks: MediaHooks, outbox: Outbox,
                 process_id: str, admission: Admission | None = None) -> None:
        self.process_id = process_id
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.outbox = outbox
        self.rooms: dict[str, Room] = {}
        self.by_conn: dict[ConnRef, Room] = {}
        self._peers = PeerCount(metrics)
        self._tasks = TaskOwner(f"rooms:{process_id}")
        # Without an app's monitor (tools, tests): an idle load, so only the session cap applies.
        admission = admission or Admission(settings.server, LoadMonitor(settings.server, metrics))
        self.services = RoomServices(settings=settings, process_id=process_id, store=store, metrics=metrics,
                                     hooks=hooks, outbox=outbox, peers=self._peers, tasks=self._tasks,
                                     peer_lost=self.peer_lost, admission=admission)

    # ---- counters --------------------------------------------------------------------------------
    @property
    def admission(self) -> Admission:
        return self.services.admission

    @property
    def peer_count(self) -> int:
        return self._peers.value

    @property
    def session_count(self) -> int:
        return sum(1 for r in self.rooms.values() if r.session_id is not None)

    def _update_gauges(self) -> None:
        self.metrics.rooms.set(len(self.rooms))
        self.metrics.sessions.set(self.session_count)

    # ---- operations ------------------------------------------------------------------------------
    async def join(self, conn: ConnRef, claims: TokenClaims, lang: str | None, scenario: str | None,
                   ref: str | None) -> None:
        if conn in self.by_conn:
            raise ProtocolError("already_joined", "this connection already joined", ref)
        room = self.rooms.get(claims.room)
        if room is None:
            room = self.rooms[claims.room] = Room(self.services, claims.room)
        try:
            p = room.admit(conn, claims, lang or "", scenario)  # "" = let the scenario decide
        except ProtocolError as exc:
            exc.ref = ref
            if not room.participants:
                await self._close_room(room)
            raise
        self.by_conn[conn] = room
        self._update_gauges()
        self.outbox.send(conn, {
            "type": "joined", "room": room.room_id, "role": p.role, "user": p.user,
            "session_id": room.session_id, "participants": room.members.public(),
            "server_ns": time.perf_counter_ns(), "ref": ref,
        })
        room.broadcast({"type": "participant_joined", **p.public(), "session_id": room.session_id}, exclude=conn)
        if p.role in PRIMARY_ROLES:
            await room.start_session(p)
        try:
            await self.store.set_presence(room.room_id, p.user, {"role": p.role, "process_id": conn[0]},
                                          self.settings.server.presence_ttl_s)
        except Exception:  # noqa: BLE001 - presence is advisory
            log.exception("set_presence failed")

    def participant(self, conn: ConnRef, ref: str | None) -> tuple[Room, Participant]:
        room = self.by_conn.get(conn)
        p = room.participants.get(conn) if room else None
        if room is None or p is None:
            raise ProtocolError("not_joined", "join first", ref)
        return room, p

    async def handle(self, conn: ConnRef, msg: AnyMessage) -> None:
        """A post-join message from ``conn``; replies go through the outbox."""
        room, p = self.participant(conn, msg.id)
        handler = HANDLERS.get(msg.type)
        if handler is None:
            raise ProtocolError("unknown_type", f"{msg.type} is not handled here", msg.id)
        reply = await handler(room, p, msg)
        if reply is not None:
            self.outbox.send(conn, reply)

    async def leave(self, conn: ConnRef, reason: str) -> None:
        room = self.by_conn.pop(conn, None)
        if room is None:
            return
        p = await room.remove(conn, reason)
        if p is not None and not room.members.has_user(p.user):
            try:
                await self.store.clear_presence(room.room_id, p.user)
            except Exception:  # noqa: BLE001
                log.exception("clear_presence failed")
        if not room.participants:
            await self._close_room(room)
        self._update_gauges()

    async def peer_lost(self, conn: ConnRef, reason: str) -> None:
        """A participant's peer connection failed: drop it from the room and close its socket."""
        room = self.by_conn.get(conn)
        p = room.participants.get(conn) if room else None
        if p is None or p.closed:
            return
        self.outbox.send(conn, {"type": "error", "reason": reason, "message": "media connection lost", "ref": None})
        await self.leave(conn, reason)
        self.outbox.drop(conn, 1011, reason)

    async def _close_room(self, room: Room) -> None:
        if self.rooms.get(room.room_id) is room:
            del self.rooms[room.room_id]
        await room.close()
        if room.room_id not in self.rooms:
            try:
                await self.store.release_room(room.room_id, self.process_id)
            except Exception:  # noqa: BLE001
                log.exception("release_room failed")
        self._update_gauges()

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            for conn in room.participants:
                if conn[0] != self.process_id:  # sockets on other processes: tell them to rejoin now
                    self.outbox.send(conn, {"type": "error", "reason": "room_lost",
                                            "message": "the room's server is shutting down; join again", "ref": None})
                    self.outbox.drop(conn, 1012, "room_lost")
        for room in list(self.rooms.values()):
            for conn in list(room.participants):
                self.by_conn.pop(conn, None)
            await self._close_room(room)
        # media closes still writing a report: let them finish within the shutdown bound
        await self._tasks.close(grace_s=self.settings.server.shutdown_timeout_s / 2)
        self._update_gauges()
