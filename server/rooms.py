"""Room engine: runs on the process that owns the room (see router.py).

A room has at most one primary (trainee or streamer), at most one mentor and any number of qa.
The server is the WebRTC peer of everyone: the primary's media goes to the media hook (practice
agent) and, through a latest-frame ShadowRelay, to the mentor; the mentor's audio goes to the
primary only while whisper is on. The room is also the session's ``SessionEvents`` sink.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Protocol

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from media.peer import close_quietly, create_peer_connection
from media.relay import ShadowRelay, SwitchableTrack
from server.auth import PRIMARY_ROLES, TokenClaims
from server.metrics import Metrics
from server.protocol import Ice, Offer, ProtocolError, Tip, TipAck, Whisper
from server.settings import Settings
from server.store.base import Store

log = logging.getLogger(__name__)

ConnRef = tuple[str, str]  # (process id holding the WebSocket, connection id)
EVENT_QUEUE_SIZE = 2000
TRANSIENT_EVENT_TYPES = frozenset({"metrics"})  # live snapshots: broadcast, not logged
FLUSH_TIMEOUT_S = 3.0


class Outbox(Protocol):
    """How the engine talks back to connections, wherever they live (implemented by the router)."""

    def send(self, conn: ConnRef, msg: dict[str, Any]) -> None: ...

    def drop(self, conn: ConnRef, code: int, reason: str) -> None: ...


class MediaHandle(Protocol):
    async def close(self) -> None: ...


@dataclass
class MediaContext:
    """What a media hook gets for the primary's peer connection (before the answer is made).

    ``remote_tracks`` are relay subscriptions (buffered) of the primary's inbound tracks: read
    them freely; the raw tracks are also feeding the mentor. Add outbound tracks with
    ``pc.addTrack`` (the offer's transceivers are reused).
    """

    room_id: str
    session_id: str
    user: str
    role: str
    lang: str
    scenario: str | None
    pc: RTCPeerConnection
    remote_tracks: list[MediaStreamTrack]
    events: Any  # coach.contracts.SessionEvents (the Room)
    store: Store
    settings: Settings


class MediaHooks(Protocol):
    def attach(self, ctx: MediaContext) -> MediaHandle | None | Awaitable[MediaHandle | None]: ...


class NoMediaHooks:
    """Default: no agent; the primary's media only feeds the mentor."""

    def attach(self, ctx: MediaContext) -> None:
        return None


@dataclass(eq=False)
class Participant:
    conn: ConnRef
    user: str
    role: str
    lang: str
    scenario: str | None
    joined_ns: int = field(default_factory=time.perf_counter_ns)
    pc: RTCPeerConnection | None = None
    inbound: dict[str, MediaStreamTrack] = field(default_factory=dict)  # kind -> raw remote track
    hook_tracks: list[MediaStreamTrack] = field(default_factory=list)
    media: MediaHandle | None = None
    # mentor: what it sees/hears of the primary; primary: the whisper channel from the mentor
    out_audio: SwitchableTrack | None = None
    out_video: SwitchableTrack | None = None
    feeds: dict[str, tuple[MediaStreamTrack, MediaStreamTrack]] = field(default_factory=dict)  # slot -> (src, proxy)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    closed: bool = False

    def public(self) -> dict[str, str]:
        return {"user": self.user, "role": self.role}


@dataclass
class _PendingTip:
    sent_ns: int
    mentor: ConnRef
    text: str


class Room:
    """One room on its owner process. Implements coach.contracts.SessionEvents."""

    def __init__(self, manager: "RoomManager", room_id: str) -> None:
        self.manager = manager
        self.room_id = room_id
        self.participants: dict[ConnRef, Participant] = {}
        self.session_id: str | None = None
        self.session_started_at: float | None = None
        self.session_kind: str | None = None
        self.whisper_on = False
        self.relay = ShadowRelay()
        self._tips: dict[str, _PendingTip] = {}
        self._removals: dict[ConnRef, asyncio.Future[Participant | None]] = {}
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._dropped_events = 0
        self._writer = asyncio.create_task(self._write_events(), name=f"room-events:{room_id}")
        self.closed = False

    # ---- lookups -----------------------------------------------------------------------------
    @property
    def primary(self) -> Participant | None:
        return next((p for p in self.participants.values() if p.role in PRIMARY_ROLES), None)

    @property
    def mentor(self) -> Participant | None:
        return next((p for p in self.participants.values() if p.role == "mentor"), None)

    def peers(self) -> int:
        return sum(1 for p in self.participants.values() if p.pc is not None)

    # ---- SessionEvents ----------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Broadcast + log + metrics. Never blocks, never raises (called from the agent)."""
        try:
            event = dict(event)
            event.setdefault("session_id", self.session_id)
            event.setdefault("t_ns", time.perf_counter_ns())
            alert = event.get("type") == "alert"
            alert_primary = self.manager.settings.coach.alerts.alert_trainee
            for p in list(self.participants.values()):
                if alert and p.role in PRIMARY_ROLES and not alert_primary:
                    continue
                self.manager.outbox.send(p.conn, event)
            if event.get("type") not in TRANSIENT_EVENT_TYPES:
                self.log_event(event)
            self.manager.metrics.observe_event(event)
        except Exception:  # noqa: BLE001 - the contract says emit never raises
            log.exception("room %s: emit failed", self.room_id)

    def log_event(self, event: dict[str, Any]) -> None:
        """Append to the session's durable log through the room's single writer task."""
        if event.get("session_id") is None or self.closed:
            return
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self._dropped_events += 1
            log.error(
                "room %s: event log queue full, dropped %s event (%d dropped so far)",
                self.room_id, event.get("type"), self._dropped_events,
            )

    async def _write_events(self) -> None:
        store = self.manager.store
        while True:
            event = await self._events.get()
            if event is None:
                return
            try:
                await store.append_event(str(event["session_id"]), event)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad event must not kill the writer
                log.exception("room %s: append_event failed for %s", self.room_id, event.get("type"))

    def _broadcast(self, msg: dict[str, Any], exclude: ConnRef | None = None) -> None:
        for p in list(self.participants.values()):
            if p.conn != exclude:
                self.manager.outbox.send(p.conn, msg)

    # ---- join / leave ------------------------------------------------------------------------
    def add(self, conn: ConnRef, claims: TokenClaims, lang: str, scenario: str | None) -> Participant:
        """Synchronous check-and-insert (no await in between: two racing mentors can't both win)."""
        if claims.role in PRIMARY_ROLES and self.primary is not None:
            raise ProtocolError("room_full", f"room already has a {self.primary.role}")
        if claims.role == "mentor" and self.mentor is not None:
            raise ProtocolError("room_full", "room already has a mentor (1v1)")
        p = Participant(conn=conn, user=claims.user, role=claims.role, lang=lang, scenario=scenario)
        self.participants[conn] = p
        if p.role in PRIMARY_ROLES:
            self.session_id = uuid.uuid4().hex
            self.session_started_at = time.time()
            self.session_kind = "practice" if p.role == "trainee" else "shadow"
        return p

    async def start_session(self, p: Participant) -> None:
        record = {
            "session_id": self.session_id,
            "user": p.user,
            "room": self.room_id,
            "kind": self.session_kind,
            "started_at": self.session_started_at,
            "role": p.role,
            "lang": p.lang,
            "scenario": p.scenario,
            "status": "live",
        }
        try:
            await self.manager.store.save_session(record)
        except Exception:  # noqa: BLE001
            log.exception("room %s: save_session failed", self.room_id)
        self.emit({"type": "session_started", "kind": self.session_kind, "user": p.user, "role": p.role})

    async def remove(self, conn: ConnRef, reason: str) -> Participant | None:
        """Idempotent: concurrent callers (socket close + shutdown) share one removal."""
        task = self._removals.get(conn)
        if task is None:
            if conn not in self.participants:
                return None
            task = asyncio.ensure_future(self._remove(conn, reason))
            self._removals[conn] = task
            task.add_done_callback(lambda _t: self._removals.pop(conn, None))
        return await asyncio.shield(task)

    async def _remove(self, conn: ConnRef, reason: str) -> Participant | None:
        p = self.participants[conn]
        p.closed = True
        ending_session = p.role in PRIMARY_ROLES and self.session_id is not None
        session_id = self.session_id
        await self._release_media(p)
        self.participants.pop(conn, None)
        self._broadcast({"type": "participant_left", "user": p.user, "role": p.role, "reason": reason})
        if p.role == "mentor":
            self.whisper_on = False
            self._rewire()
        if ending_session:
            # participants still here and the leaving primary (if its socket is open) both hear it
            self.manager.outbox.send(p.conn, {"type": "session_ended", "session_id": session_id, "reason": reason})
            self.emit({"type": "session_ended", "session_id": session_id, "reason": reason})
            self._rewire()
            await self._finish_session(p, session_id, reason)
            self.session_id = None
            self._tips.clear()
        return p

    async def _finish_session(self, p: Participant, session_id: str | None, reason: str) -> None:
        if session_id is None:
            return
        store = self.manager.store
        try:
            # Merge: the media hook may have saved a richer record (report) meanwhile.
            record = await store.get_session(session_id) or {}
            ended = time.time()
            record.update(
                session_id=session_id, user=p.user, room=self.room_id, kind=self.session_kind,
                started_at=record.get("started_at", self.session_started_at),
                ended_at=ended, duration_s=round(ended - (self.session_started_at or ended), 3),
                end_reason=reason, status="ended",
            )
            await store.save_session(record)
        except Exception:  # noqa: BLE001
            log.exception("room %s: saving the finished session failed", self.room_id)

    async def _release_media(self, p: Participant) -> None:
        for task in list(p.tasks):
            task.cancel()
        if p.tasks:
            await asyncio.gather(*p.tasks, return_exceptions=True)
        p.tasks.clear()
        if p.media is not None:
            media, p.media = p.media, None
            try:
                await asyncio.wait_for(media.close(), self.manager.settings.server.shutdown_timeout_s)
            except Exception:  # noqa: BLE001
                log.exception("room %s: media hook close failed", self.room_id)
        for _src, proxy in p.feeds.values():
            proxy.stop()
        p.feeds.clear()
        for track in p.hook_tracks:
            track.stop()
        p.hook_tracks.clear()
        if p.pc is not None:
            pc, p.pc = p.pc, None
            await close_quietly(pc)
            self.manager.peer_closed()

    async def close(self) -> None:
        """Remove everyone, flush the event log, stop the relay."""
        for conn in list(self.participants):
            await self.remove(conn, "server_shutdown")
        self.closed = True
        try:
            self._events.put_nowait(None)  # writer drains what is queued, then stops
        except asyncio.QueueFull:
            self._writer.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), FLUSH_TIMEOUT_S)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        await self.relay.close()

    # ---- media ------------------------------------------------------------------------------
    async def offer(self, p: Participant, msg: Offer) -> dict[str, Any]:
        if p.pc is not None:
            raise ProtocolError("invalid_state", "already published; leave and rejoin to renegotiate", msg.id)
        settings = self.manager.settings
        if self.manager.peer_count >= settings.server.max_sessions:
            raise ProtocolError("server_busy", "too many media sessions on this server", msg.id)
        pc = create_peer_connection(settings.media)
        p.pc = pc
        self.manager.peer_opened()
        raw: list[MediaStreamTrack] = []
        pc.on("track", raw.append)
        pc.on("connectionstatechange", lambda: self._on_pc_state(p, pc))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg.sdp, type="offer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds on bad SDP
            await self._drop_pc(p)
            raise ProtocolError("bad_sdp", f"offer rejected: {exc}"[:300], msg.id) from None
        if p.closed or p.pc is not pc:
            raise ProtocolError("not_joined", "left while negotiating", msg.id)
        for track in raw:
            p.inbound.setdefault(track.kind, track)
            self._keep_draining(p, track)
        try:
            if p.role == "mentor":
                p.out_audio = self._attach_send(pc, SwitchableTrack("audio"))
                p.out_video = self._attach_send(pc, SwitchableTrack("video"))
            elif p.role in PRIMARY_ROLES:
                # The hook first: a practice session sends the customer's voice on the offer's
                # audio transceiver; the whisper channel takes it only if it is still free.
                await self._attach_hook(p, pc)
                p.out_audio = self._attach_send(pc, SwitchableTrack("audio"))  # whisper channel
            self._rewire()
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except ProtocolError as exc:  # e.g. the hook refusing an unknown scenario
            await self._drop_pc(p)
            if exc.ref is None:
                exc.ref = msg.id
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("room %s: answering %s failed", self.room_id, p.user)
            await self._drop_pc(p)
            raise ProtocolError("bad_sdp", f"could not answer: {exc}"[:300], msg.id) from None
        if p.closed or pc.localDescription is None:
            raise ProtocolError("not_joined", "left while negotiating", msg.id)
        return {"type": "answer", "sdp": pc.localDescription.sdp, "ref": msg.id}

    async def _drop_pc(self, p: Participant) -> None:
        if p.pc is not None:
            pc, p.pc = p.pc, None
            for _src, proxy in p.feeds.values():
                proxy.stop()
            p.feeds.clear()
            p.inbound.clear()
            await close_quietly(pc)
            self.manager.peer_closed()

    @staticmethod
    def _attach_send(pc: RTCPeerConnection, track: SwitchableTrack) -> SwitchableTrack | None:
        """Put ``track`` on the offer's transceiver of its kind, if the offer has one.

        Never adds a transceiver: an answer cannot add m-lines the offer lacks.
        """
        for transceiver in pc.getTransceivers():
            if transceiver.kind == track.kind and transceiver.sender.track is None:
                pc.addTrack(track)
                return track
        return None

    def _keep_draining(self, p: Participant, track: MediaStreamTrack) -> None:
        """Start the relay's reader on ``track`` now, so its frames never pile up unread.

        aiortc queues decoded frames without bound; the relay reads the source from its first
        subscriber's recv() until the track ends, even after that subscriber stops.
        """
        proxy = self.relay.subscribe(track, buffered=False)

        async def first_frame() -> None:
            try:
                await proxy.recv()
            except Exception:  # noqa: BLE001 - track ended before its first frame
                pass
            finally:
                proxy.stop()

        self._own(p, first_frame(), f"drain:{p.user}:{track.kind}")

    async def _attach_hook(self, p: Participant, pc: RTCPeerConnection) -> None:
        assert self.session_id is not None
        p.hook_tracks = [self.relay.subscribe(t, buffered=True) for t in p.inbound.values()]
        ctx = MediaContext(
            room_id=self.room_id, session_id=self.session_id, user=p.user, role=p.role, lang=p.lang,
            scenario=p.scenario, pc=pc, remote_tracks=list(p.hook_tracks), events=self,
            store=self.manager.store, settings=self.manager.settings,
        )
        result = self.manager.hooks.attach(ctx)
        if inspect.isawaitable(result):
            result = await result
        p.media = result
        if result is None:  # nobody reads them: don't let buffered proxies fill up
            for track in p.hook_tracks:
                track.stop()
            p.hook_tracks = []

    def _rewire(self) -> None:
        """Point every SwitchableTrack at the right source after any membership/media change."""
        primary, mentor = self.primary, self.mentor
        if mentor is not None:
            self._feed(mentor, "audio", mentor.out_audio, primary.inbound.get("audio") if primary else None)
            self._feed(mentor, "video", mentor.out_video, primary.inbound.get("video") if primary else None)
        if primary is not None:
            whisper_src = mentor.inbound.get("audio") if (mentor and self.whisper_on) else None
            self._feed(primary, "whisper", primary.out_audio, whisper_src)

    def _feed(self, p: Participant, slot: str, out: SwitchableTrack | None, src: MediaStreamTrack | None) -> None:
        if out is None:
            return
        current = p.feeds.get(slot)
        if current is not None and current[0] is src and src is not None:
            return
        if current is not None:
            current[1].stop()
            del p.feeds[slot]
        if src is None or src.readyState != "live":
            out.set_source(None)
            return
        proxy = self.relay.subscribe(src, buffered=self.manager.settings.media.relay_buffered)
        p.feeds[slot] = (src, proxy)
        out.set_source(proxy)

    async def ice(self, p: Participant, msg: Ice) -> None:
        if p.pc is None:
            raise ProtocolError("invalid_state", "send an offer before ice candidates", msg.id)
        c = msg.candidate
        if c is None or not c.candidate:
            return  # end of candidates: aiortc needs no marker
        try:
            candidate = candidate_from_sdp(c.candidate.split(":", 1)[1])
            candidate.sdpMid = c.sdpMid
            candidate.sdpMLineIndex = c.sdpMLineIndex
            await p.pc.addIceCandidate(candidate)
        except Exception as exc:  # noqa: BLE001
            raise ProtocolError("invalid_field", f"bad ice candidate: {exc}"[:200], msg.id) from None

    def _on_pc_state(self, p: Participant, pc: RTCPeerConnection) -> None:
        state = pc.connectionState
        if p.closed or p.pc is not pc:
            return
        if state in ("failed", "closed"):
            self._own_manager(self.manager.peer_lost(self, p, f"peer_{state}"))
        elif state == "disconnected":
            self._own(p, self._grace(p, pc), f"grace:{p.user}")

    async def _grace(self, p: Participant, pc: RTCPeerConnection) -> None:
        await asyncio.sleep(self.manager.settings.media.ice_disconnect_grace_s)
        if not p.closed and p.pc is pc and pc.connectionState != "connected":
            self._own_manager(self.manager.peer_lost(self, p, "peer_disconnected"))

    def _own(self, p: Participant, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        p.tasks.add(task)
        task.add_done_callback(p.tasks.discard)

    def _own_manager(self, coro: Any) -> None:
        self.manager.own(coro)

    # ---- mentor features ---------------------------------------------------------------------
    def tip(self, mentor: Participant, msg: Tip) -> dict[str, Any]:
        streamer = self.primary
        if streamer is None or streamer.role != "streamer":
            raise ProtocolError("no_streamer", "no streamer in this room", msg.id)
        tip_id = uuid.uuid4().hex[:12]
        now = time.perf_counter_ns()
        self._tips[tip_id] = _PendingTip(sent_ns=now, mentor=mentor.conn, text=msg.text)
        if len(self._tips) > 256:  # unacked tips must not grow forever
            self._tips.pop(next(iter(self._tips)))
        self.manager.outbox.send(streamer.conn, {
            "type": "tip", "tip_id": tip_id, "text": msg.text, "from": mentor.user,
            "server_ns": now, "sent_at_ms": time.time() * 1000.0,
        })
        self.manager.metrics.tips.inc()
        self.log_event({"type": "tip", "session_id": self.session_id, "t_ns": now, "tip_id": tip_id,
                        "text": msg.text, "from": mentor.user})
        return {"type": "tip_sent", "tip_id": tip_id, "ref": msg.id, "server_ns": now}

    def tip_ack(self, streamer: Participant, msg: TipAck) -> None:
        pending = self._tips.pop(msg.tip_id, None)
        if pending is None:
            raise ProtocolError("unknown_tip", f"no pending tip {msg.tip_id}", msg.id)
        now = time.perf_counter_ns()
        rtt_ms = (now - pending.sent_ns) / 1e6
        # Same-machine clients report their perf_counter_ns receipt time → true one-way delay.
        if msg.received_ns is not None and pending.sent_ns <= msg.received_ns <= now:
            delivery_ms = (msg.received_ns - pending.sent_ns) / 1e6
        else:
            delivery_ms = rtt_ms / 2
        self.manager.metrics.tip_delivery.observe(delivery_ms / 1000)
        log.info("room %s: tip %s delivered in %.1f ms (rtt %.1f ms)", self.room_id, msg.tip_id, delivery_ms, rtt_ms)
        if pending.mentor in self.participants:
            self.manager.outbox.send(pending.mentor, {
                "type": "tip_acked", "tip_id": msg.tip_id, "rtt_ms": round(rtt_ms, 3),
                "delivery_ms": round(delivery_ms, 3),
            })
        self.log_event({"type": "tip_ack", "session_id": self.session_id, "t_ns": now, "tip_id": msg.tip_id,
                        "rtt_ms": rtt_ms, "delivery_ms": delivery_ms})

    def whisper(self, mentor: Participant, msg: Whisper) -> None:
        self.whisper_on = msg.on
        self._rewire()
        state = {"type": "whisper", "on": msg.on, "from": mentor.user}
        self.manager.outbox.send(mentor.conn, {**state, "ref": msg.id})
        if self.primary is not None:
            self.manager.outbox.send(self.primary.conn, state)
        self.log_event({"type": "whisper", "session_id": self.session_id, "t_ns": time.perf_counter_ns(),
                        "on": msg.on, "from": mentor.user})


class RoomManager:
    """All rooms this process owns. Every public method takes a connection reference."""

    def __init__(
        self, settings: Settings, store: Store, metrics: Metrics, hooks: MediaHooks, outbox: Outbox,
        process_id: str,
    ) -> None:
        self.process_id = process_id
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.hooks = hooks
        self.outbox = outbox
        self.rooms: dict[str, Room] = {}
        self.by_conn: dict[ConnRef, Room] = {}
        self.peer_count = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._released: set[str] = set()

    # ---- counters --------------------------------------------------------------------------------
    def peer_opened(self) -> None:
        self.peer_count += 1
        self.metrics.peers.set(self.peer_count)

    def peer_closed(self) -> None:
        self.peer_count -= 1
        self.metrics.peers.set(self.peer_count)

    @property
    def session_count(self) -> int:
        return sum(1 for r in self.rooms.values() if r.session_id is not None)

    def _update_gauges(self) -> None:
        self.metrics.rooms.set(len(self.rooms))
        self.metrics.sessions.set(self.session_count)

    def own(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- operations ------------------------------------------------------------------------------
    async def join(self, conn: ConnRef, claims: TokenClaims, lang: str | None, scenario: str | None,
                   ref: str | None) -> None:
        if conn in self.by_conn:
            raise ProtocolError("already_joined", "this connection already joined", ref)
        room = self.rooms.get(claims.room)
        if room is None:
            room = self.rooms[claims.room] = Room(self, claims.room)
        try:
            p = room.add(conn, claims, lang or "", scenario)  # "" = let the scenario decide
        except ProtocolError as exc:
            exc.ref = ref
            if not room.participants:
                await self._close_room(room)
            raise
        self.by_conn[conn] = room
        self._update_gauges()
        self.outbox.send(conn, {
            "type": "joined", "room": room.room_id, "role": p.role, "user": p.user,
            "session_id": room.session_id, "participants": [x.public() for x in room.participants.values()],
            "server_ns": time.perf_counter_ns(), "ref": ref,
        })
        room._broadcast({"type": "participant_joined", **p.public(), "session_id": room.session_id}, exclude=conn)
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

    async def handle(self, conn: ConnRef, msg: Any) -> None:
        """A post-join message from ``conn``; replies go through the outbox."""
        room, p = self.participant(conn, getattr(msg, "id", None))
        if isinstance(msg, Offer):
            self.outbox.send(conn, await room.offer(p, msg))
        elif isinstance(msg, Ice):
            await room.ice(p, msg)
        elif isinstance(msg, Tip):
            self.outbox.send(conn, room.tip(p, msg))
        elif isinstance(msg, TipAck):
            room.tip_ack(p, msg)
        elif isinstance(msg, Whisper):
            room.whisper(p, msg)
        else:
            raise ProtocolError("unknown_type", f"{getattr(msg, 'type', '?')} is not handled here",
                                getattr(msg, "id", None))

    async def leave(self, conn: ConnRef, reason: str) -> None:
        room = self.by_conn.pop(conn, None)
        if room is None:
            return
        p = await room.remove(conn, reason)
        if p is not None and not any(x.user == p.user for x in room.participants.values()):
            try:
                await self.store.clear_presence(room.room_id, p.user)
            except Exception:  # noqa: BLE001
                log.exception("clear_presence failed")
        if not room.participants:
            await self._close_room(room)
        self._update_gauges()

    async def peer_lost(self, room: Room, p: Participant, reason: str) -> None:
        """The participant's peer connection failed: drop it from the room and close its socket."""
        if p.closed:
            return
        self.outbox.send(p.conn, {"type": "error", "reason": reason, "message": "media connection lost", "ref": None})
        await self.leave(p.conn, reason)
        self.outbox.drop(p.conn, 1011, reason)

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
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._update_gauges()
