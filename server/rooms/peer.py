"""One participant's WebRTC peer: negotiation, ICE, disconnect grace, and the one teardown.

The server is the peer of everyone. A ``PeerSession`` owns the RTCPeerConnection, the raw
inbound tracks, the relay subscriptions feeding its outbound ``SwitchableTrack``s, the media
hook's handle and its background tasks; ``release()`` closes all of them, on every path.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from coach.tasks import TaskOwner
from media.peer import close_quietly, create_peer_connection
from media.relay import ShadowRelay, SwitchableTrack
from media.sdp_check import OfferError, check_candidate, check_offer, parse_networks
from server.protocol import IceCandidate, ProtocolError
from server.rooms.contracts import MediaContext, MediaHandle, RoomServices, WhisperTap

log = logging.getLogger(__name__)

Configure = Callable[[RTCPeerConnection], Awaitable[None]]
MediaContextFactory = Callable[[RTCPeerConnection, list[MediaStreamTrack]], MediaContext]


class PeerSession:
    def __init__(self, services: RoomServices, relay: ShadowRelay, label: str,
                 on_lost: Callable[[str], None]) -> None:
        self.services = services
        self.relay = relay
        self.label = label
        self.on_lost = on_lost
        self.pc: RTCPeerConnection | None = None
        self.inbound: dict[str, MediaStreamTrack] = {}  # kind -> raw remote track
        self.hook_tracks: list[MediaStreamTrack] = []
        self.media: MediaHandle | None = None
        # mentor: what it sees/hears of the primary; primary: the whisper channel from the mentor
        self.out_audio: SwitchableTrack | None = None
        self.out_video: SwitchableTrack | None = None
        self.feeds: dict[str, tuple[MediaStreamTrack, MediaStreamTrack]] = {}  # slot -> (src, proxy)
        self.whisper_tap: WhisperTap | None = None  # primary: the mentor's whisper for its media hook
        self.tasks = TaskOwner(f"peer:{label}")
        self.allowed_networks = parse_networks(services.settings.media.allowed_candidate_networks)
        self.retired = False  # its participant left: nothing may start again

    # ---- negotiation --------------------------------------------------------------------------
    async def negotiate(self, sdp: str, ref: str | None, configure: Configure) -> str:
        """Apply the offer, let ``configure`` add tracks, answer. Any failure releases the peer."""
        if self.pc is not None:
            raise ProtocolError("invalid_state", "already published; leave and rejoin to renegotiate", ref)
        settings = self.services.settings
        refused = self.services.admission.refusal(self.services.peers.value)
        if refused is not None:  # live sessions go on; only this new one is refused
            raise ProtocolError("server_busy", refused, ref)
        try:
            check_offer(sdp, self.allowed_networks)
        except OfferError as exc:
            log.info("peer %s: offer refused: %s", self.label, exc)
            raise ProtocolError("bad_sdp", f"offer rejected: {exc}", ref) from None
        pc = create_peer_connection(settings.media)
        self.pc = pc
        self.services.peers.opened()
        raw: list[MediaStreamTrack] = []
        pc.on("track", raw.append)
        pc.on("connectionstatechange", lambda: self._on_state(pc))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # noqa: BLE001 - aiortc raises many kinds on bad SDP
            await self.release()
            raise ProtocolError("bad_sdp", f"offer rejected: {exc}"[:300], ref) from None
        if self.retired or self.pc is not pc:
            raise ProtocolError("not_joined", "left while negotiating", ref)
        for track in raw:
            self.inbound.setdefault(track.kind, track)
            self._keep_draining(track)
        try:
            await configure(pc)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except ProtocolError as exc:  # e.g. the hook refusing an unknown scenario
            await self.release()
            if exc.ref is None:
                exc.ref = ref
            raise
        except Exception as exc:  # noqa: BLE001 - aiortc's answer path raises many kinds
            log.warning("peer %s: answering failed: %s: %s", self.label, type(exc).__name__, exc)
            await self.release()
            raise ProtocolError("bad_sdp", f"could not answer: {exc}"[:300], ref) from None
        if self.retired or pc.localDescription is None:
            raise ProtocolError("not_joined", "left while negotiating", ref)
        return str(pc.localDescription.sdp)

    @staticmethod
    def attach_send(pc: RTCPeerConnection, track: SwitchableTrack) -> SwitchableTrack | None:
        """Put ``track`` on the offer's transceiver of its kind, if the offer has one.

        Never adds a transceiver: an answer cannot add m-lines the offer lacks.
        """
        for transceiver in pc.getTransceivers():
            if transceiver.kind == track.kind and transceiver.sender.track is None:
                pc.addTrack(track)
                return track
        return None

    async def attach_media(self, pc: RTCPeerConnection, make_context: MediaContextFactory) -> None:
        """Hand the inbound media (buffered relay copies) to the media hook."""
        self.hook_tracks = [self.relay.subscribe(t, buffered=True) for t in self.inbound.values()]
        result = self.services.hooks.attach(make_context(pc, list(self.hook_tracks)))
        if inspect.isawaitable(result):
            result = await result
        self.media = result
        if result is None:  # nobody reads them: don't let buffered proxies fill up
            self._stop_hook_tracks()

    def _keep_draining(self, track: MediaStreamTrack) -> None:
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

        self.tasks.spawn(first_frame(), f"drain:{self.label}:{track.kind}")

    # ---- ICE and connection state -------------------------------------------------------------
    async def add_ice(self, c: IceCandidate | None, ref: str | None) -> None:
        if self.pc is None:
            raise ProtocolError("invalid_state", "send an offer before ice candidates", ref)
        if c is None or not c.candidate:
            return  # end of candidates: aiortc needs no marker
        try:
            candidate = candidate_from_sdp(c.candidate.split(":", 1)[1])
            candidate.sdpMid = c.sdpMid
            candidate.sdpMLineIndex = c.sdpMLineIndex
            check_candidate(candidate, self.allowed_networks)
            await self.pc.addIceCandidate(candidate)
        except OfferError as exc:
            raise ProtocolError("invalid_field", str(exc), ref) from None
        except Exception as exc:  # noqa: BLE001
            raise ProtocolError("invalid_field", f"bad ice candidate: {exc}"[:200], ref) from None

    def _on_state(self, pc: RTCPeerConnection) -> None:
        state = pc.connectionState
        if self.retired or self.pc is not pc:
            return
        if state in ("failed", "closed"):
            self.on_lost(f"peer_{state}")
        elif state == "disconnected":
            self.tasks.spawn(self._grace(pc), f"grace:{self.label}")

    async def _grace(self, pc: RTCPeerConnection) -> None:
        await asyncio.sleep(self.services.settings.media.ice_disconnect_grace_s)
        if not self.retired and self.pc is pc and pc.connectionState != "connected":
            self.on_lost("peer_disconnected")

    # ---- feeds (what shadow wiring points the outbound tracks at) -----------------------------
    def feed(self, slot: str, out: SwitchableTrack | None, src: MediaStreamTrack | None, buffered: bool) -> None:
        if out is None:
            return
        current = self.feeds.get(slot)
        if current is not None and current[0] is src and src is not None:
            return
        if current is not None:
            current[1].stop()
            del self.feeds[slot]
        if src is None or src.readyState != "live":
            out.set_source(None)
            return
        proxy = self.relay.subscribe(src, buffered=buffered)
        self.feeds[slot] = (src, proxy)
        out.set_source(proxy)

    # ---- the one teardown ---------------------------------------------------------------------
    async def release(self) -> None:
        """Tasks, media hook, relay feeds, hook tracks, then the peer connection. Idempotent."""
        await self.tasks.cancel_all()
        if self.media is not None:
            media, self.media = self.media, None
            await self._close_media(media)
        for _src, proxy in self.feeds.values():
            proxy.stop()
        self.feeds.clear()
        self._stop_hook_tracks()
        self.inbound.clear()
        self.out_audio = self.out_video = None
        if self.whisper_tap is not None:
            self.whisper_tap.connect(None)
            self.whisper_tap = None
        if self.pc is not None:
            pc, self.pc = self.pc, None
            await close_quietly(pc)
            self.services.peers.closed()

    async def _close_media(self, media: MediaHandle) -> None:
        """Wait for the media hook's close (recording, report) at most ``shutdown_timeout_s``;
        past that it goes on as a manager task instead of being cut off: under heavy load a
        report can take longer, and cancelling it would lose it."""
        timeout = self.services.settings.server.shutdown_timeout_s
        if self.services.tasks.closed:  # shutting down: nothing outlives this wait
            try:
                await asyncio.wait_for(media.close(), timeout)
            except Exception:  # noqa: BLE001
                log.exception("peer %s: media hook close failed", self.label)
            return
        closing = self.services.tasks.spawn(media.close(), f"media-close:{self.label}")  # the owner logs a failure
        done, _ = await asyncio.wait({closing}, timeout=timeout)
        if not done:
            log.warning("peer %s: media close still running after %.1f s; it goes on in the background",
                        self.label, timeout)

    async def retire(self) -> None:
        """The participant left: release, and refuse anything that was still negotiating."""
        self.retired = True
        await self.release()

    def _stop_hook_tracks(self) -> None:
        for track in self.hook_tracks:
            track.stop()
        self.hook_tracks = []
