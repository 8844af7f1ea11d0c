"""One room on its owner process: members, their peers, the session and its events.

The primary's media goes to the media hook (practice agent) and, through a latest-frame relay,
to the mentor; the mentor's audio goes to the primary only while whisper is on. The room is
the session's ``SessionEvents`` sink (coach.contracts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from coach.tasks import TaskOwner
from media.relay import SwitchableTrack
from server.auth import TokenClaims
from server.protocol import Ice, Offer, ProtocolError, Tip, TipAck, Whisper
from server.rooms.contracts import ConnRef, MediaContext, RoomServices, WhisperTap
from server.rooms.event_log import EventLog
from server.rooms.membership import Membership, Participant
from server.rooms.mentor import TipDesk
from server.rooms.peer import PeerSession
from server.rooms.records import SessionRecords
from server.rooms.shadow import ShadowWiring

log = logging.getLogger(__name__)

TRANSIENT_EVENT_TYPES = frozenset({"metrics"})  # live snapshots: broadcast, not logged


class Room:
    def __init__(self, services: RoomServices, room_id: str) -> None:
        self.services = services
        self.room_id = room_id
        self.members = Membership(services.outbox)
        self.records = SessionRecords(services.store, room_id, services.process_id)
        self.events = EventLog(services.store, room_id)
        self.shadow = ShadowWiring(buffered=services.settings.media.relay_buffered)
        self.tips = TipDesk(room_id, services.outbox, services.metrics, self.log_event)
        self._removals: dict[ConnRef, asyncio.Task[Participant | None]] = {}
        self._tasks = TaskOwner(f"room:{room_id}")  # removals: shared by concurrent callers
        self.closed = False

    @property
    def participants(self) -> dict[ConnRef, Participant]:
        return self.members.participants

    @property
    def session_id(self) -> str | None:
        return self.records.session_id

    # ---- SessionEvents ----------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Broadcast + log + metrics. Never blocks, never raises (called from the agent)."""
        try:
            event = dict(event)
            event.setdefault("session_id", self.session_id)
            event.setdefault("t_ns", time.perf_counter_ns())
            alert = event.get("type") == "alert"
            alert_primary = self.services.settings.coach.alerts.alert_trainee
            for p in list(self.participants.values()):
                if alert and p.is_primary and not alert_primary:
                    continue
                self.services.outbox.send(p.conn, event)
            if event.get("type") not in TRANSIENT_EVENT_TYPES:
                self.log_event(event)
            self.services.metrics.observe_event(event)
        except Exception:  # noqa: BLE001 - the contract says emit never raises
            log.exception("room %s: emit failed", self.room_id)

    def log_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def broadcast(self, msg: dict[str, Any], exclude: ConnRef | None = None) -> None:
        self.members.broadcast(msg, exclude)

    # ---- join / leave ------------------------------------------------------------------------
    def admit(self, conn: ConnRef, claims: TokenClaims, lang: str, scenario: str | None) -> Participant:
        """Synchronous check-and-insert (no await in between: two racing mentors can't both win)."""
        self.members.check_room_for(claims)
        peer = PeerSession(self.services, self.shadow.relay, claims.user,
                           on_lost=lambda reason: self._peer_lost(conn, reason))
        p = Participant(conn=conn, user=claims.user, role=claims.role, lang=lang, scenario=scenario, peer=peer)
        self.members.add(p)
        if p.is_primary:
            self.records.begin(p.role)
        return p

    async def start_session(self, p: Participant) -> None:
        await self.records.save_started(p.user, p.role, p.lang, p.scenario)
        self.emit({"type": "session_started", "kind": self.records.kind, "user": p.user, "role": p.role})

    def _peer_lost(self, conn: ConnRef, reason: str) -> None:
        # On the manager's owner: the removal cancels this peer's own tasks.
        if self.services.tasks.closed:
            return  # shutting down: the manager removes everyone anyway
        self.services.tasks.spawn(self.services.peer_lost(conn, reason), f"peer-lost:{self.room_id}:{conn[1][:8]}")

    async def remove(self, conn: ConnRef, reason: str) -> Participant | None:
        """Idempotent: concurrent callers (socket close + shutdown) share one removal."""
        task = self._removals.get(conn)
        if task is None:
            if conn not in self.members:
                return None
            task = self._tasks.spawn(self._remove(conn, reason), f"remove:{self.room_id}:{conn[1][:8]}")
            self._removals[conn] = task
            task.add_done_callback(lambda _t: self._removals.pop(conn, None))
        return await asyncio.shield(task)

    async def _remove(self, conn: ConnRef, reason: str) -> Participant | None:
        p = self.participants[conn]
        p.closed = True
        session_id = self.session_id
        ending_session = p.is_primary and session_id is not None
        await p.peer.retire()
        self.members.discard(conn)
        self.broadcast({"type": "participant_left", "user": p.user, "role": p.role, "reason": reason})
        if p.role == "mentor":
            self.shadow.whisper_on = False
            self.rewire()
        if ending_session and session_id is not None:
            # participants still here and the leaving primary (if its socket is open) both hear it
            self.services.outbox.send(p.conn, {"type": "session_ended", "session_id": session_id, "reason": reason})
            self.emit({"type": "session_ended", "session_id": session_id, "reason": reason})
            self.rewire()
            started_at, kind = self.records.end(session_id)  # before any await: see end()
            self.tips.clear()
            await self.records.save_finished(session_id, p.user, reason, started_at, kind)
        return p

    async def close(self) -> None:
        """Remove everyone, flush the event log, stop the relay."""
        for conn in list(self.participants):
            await self.remove(conn, "server_shutdown")
        self.closed = True
        await self._tasks.close()
        await self.events.close()
        await self.shadow.close()

    # ---- media ------------------------------------------------------------------------------
    def rewire(self) -> None:
        primary, mentor = self.members.primary, self.members.mentor
        self.shadow.rewire(primary.peer if primary else None, mentor.peer if mentor else None)

    async def offer(self, p: Participant, msg: Offer) -> dict[str, Any]:
        async def configure(pc: RTCPeerConnection) -> None:
            if p.role == "mentor":
                p.peer.out_audio = p.peer.attach_send(pc, SwitchableTrack("audio"))
                p.peer.out_video = p.peer.attach_send(pc, SwitchableTrack("video"))
            elif p.is_primary:
                # The hook first: a practice session sends the customer's voice on the offer's
                # audio transceiver; the whisper channel takes it only if it is still free.
                p.peer.whisper_tap = WhisperTap()  # the mentor's whisper for the hook's recording
                await p.peer.attach_media(pc, lambda pc_, tracks: self._media_context(p, pc_, tracks))
                p.peer.out_audio = p.peer.attach_send(pc, SwitchableTrack("audio"))  # whisper channel
            self.rewire()

        sdp = await p.peer.negotiate(msg.sdp, msg.id, configure)
        if p.closed:
            raise ProtocolError("not_joined", "left while negotiating", msg.id)
        return {"type": "answer", "sdp": sdp, "ref": msg.id}

    def _media_context(self, p: Participant, pc: RTCPeerConnection, tracks: list[MediaStreamTrack]) -> MediaContext:
        assert self.session_id is not None  # a primary is a member, so its session exists
        return MediaContext(
            room_id=self.room_id, session_id=self.session_id, user=p.user, role=p.role, lang=p.lang,
            scenario=p.scenario, pc=pc, remote_tracks=tracks, events=self,
            store=self.services.store, settings=self.services.settings,
            whisper=p.peer.whisper_tap or WhisperTap(),
        )

    async def ice(self, p: Participant, msg: Ice) -> None:
        await p.peer.add_ice(msg.candidate, msg.id)

    # ---- mentor features ---------------------------------------------------------------------
    def tip(self, mentor: Participant, msg: Tip) -> dict[str, Any]:
        streamer = self.members.primary
        if streamer is None or streamer.role != "streamer":
            raise ProtocolError("no_streamer", "no streamer in this room", msg.id)
        return self.tips.send(self.session_id, mentor.conn, mentor.user, streamer.conn, msg)

    def tip_ack(self, streamer: Participant, msg: TipAck) -> None:
        self.tips.ack(self.session_id, msg, mentor_present=lambda conn: conn in self.members)

    def whisper(self, mentor: Participant, msg: Whisper) -> None:
        self.shadow.whisper_on = msg.on
        self.rewire()
        state = {"type": "whisper", "on": msg.on, "from": mentor.user}
        self.services.outbox.send(mentor.conn, {**state, "ref": msg.id})
        primary = self.members.primary
        if primary is not None:
            self.services.outbox.send(primary.conn, state)
        self.log_event({"type": "whisper", "session_id": self.session_id, "t_ns": time.perf_counter_ns(),
                        "on": msg.on, "from": mentor.user})
