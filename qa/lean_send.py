"""Lean send path of the light QA load generator: one 20 ms clock per process sends every
session's pre-encoded Opus packet straight to its DTLS transport, past aiortc's RTCRtpSender.

With ``OpusFileTrack`` alone, each simulated trainee costs an RTCRtpSender task that awaits the
track's recv() with its own 20 ms sleep, an av.Packet, an RtpPacket object, its serialization
with header extensions and two NTP clock reads per packet. Here one task per event loop
(``LeanClock``) wakes at most five times per 20 ms (the sessions spread over five phases) and,
for each session due, patches sequence number and timestamp
into a header serialized once, appends the payload and sends it as ``_send_rtp`` does (SRTP
protect with the transport's session, then aioice's datagram send on the nominated pair)
without its three coroutine layers: a tick is one synchronous pass. The stream is the one aiortc
would send: same SSRC, payload type, marker bit and mid header extension; sequence numbers and
timestamps continue by one and 960 per packet; the clip onset/offset marks are timed as each
packet leaves. Not sent: abs-send-time, which a receiver only reads for video bandwidth
estimation, and RTP retransmission history (audio negotiates no NACK).

The RTCRtpSender itself still starts (``send()`` runs unchanged): its RTCP task reports and
answers as usual, and this module keeps its sender-report counters current. Its RTP task parks
on ``LeanOpusTrack.recv()``, which never returns a frame.

Pinned to aiortc == 1.16.0 internals (``RTCRtpSender.send`` is wrapped on the instance; used:
``RTCDtlsTransport._tx_srtp``, ``RTCIceTransport._connection`` and aioice's ``_nominated`` pairs,
the sender's name-mangled SR counters); ``attach_lean_sender`` refuses any other version.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import weakref
from typing import Any

import aiortc
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc import clock as rtc_clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from aiortc.utils import random32

from qa.opus_track import FRAME_SAMPLES, OpusFileTrack

AIORTC_VERSION = "1.16.0"  # the internals above were read in this version
TICK_NS = 20_000_000
PHASES = 5  # sending phases per 20 ms (4 ms apart), see LeanClock
logger = logging.getLogger(__name__)
_SEQ_TS = struct.Struct("!HI")


class LeanOpusTrack(OpusFileTrack):
    """An ``OpusFileTrack`` whose packets a ``LeanClock`` sends. aiortc's sender task awaits
    recv() until the track stops (then recv raises, as a stopped track does)."""

    def __init__(self) -> None:
        super().__init__()
        self._stopped: asyncio.Future[None] | None = None

    async def recv(self) -> Any:  # never a frame: the lean clock sends this track's packets
        if self.readyState != "live":
            raise MediaStreamError
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._stopped)
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)


class LeanStream:
    """One session's outgoing RTP stream: header serialized once, packets sent by the clock."""

    def __init__(self, sender: RTCRtpSender, track: LeanOpusTrack, parameters: RTCRtpSendParameters) -> None:
        self.sender = sender
        self.track = track
        self.transport = sender.transport  # RTCDtlsTransport
        extensions = HeaderExtensionsMap()
        extensions.configure(parameters)
        payload_type = parameters.codecs[0].payloadType
        assert payload_type is not None  # negotiated: set by the answer
        template = RtpPacket(payload_type=payload_type, marker=1, ssrc=sender._ssrc)
        template.extensions.mid = parameters.muxId
        header = template.serialize(extensions)
        self._head, self._tail = header[:2], header[8:]  # around sequence number + timestamp
        self.sequence_number = random_sequence_number()  # as aiortc's sender: no early wrap
        self.timestamp = random32()
        self.packets = 0
        self.octets = 0
        self._pair: Any = None
        self._addr: tuple[str, int] | None = None

    def next_packet(self) -> bytes:
        """The track's next packet, timed as it leaves now."""
        payload = self.track.next_payload(time.perf_counter_ns())
        data = self._head + _SEQ_TS.pack(self.sequence_number, self.timestamp) + self._tail + payload
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.timestamp = (self.timestamp + FRAME_SAMPLES) & 0xFFFFFFFF
        self.packets += 1
        self.octets += len(payload)
        return data

    def send_next(self) -> bool:
        """Protect and send the next packet as ``RTCDtlsTransport._send_rtp`` and aioice's
        ``Connection.send`` would, minus their three coroutine layers; False once the transport
        is no longer connected (the session is over, as aiortc's RTP task ends then)."""
        dtls = self.transport
        pair = dtls.transport._connection._nominated.get(1)  # the ICE pair carrying the media
        if dtls.state != "connected" or pair is None:
            return False
        if pair is not self._pair:
            self._pair, self._addr = pair, pair.remote_addr
        pair.protocol.transport.sendto(dtls._tx_srtp.protect(self.next_packet()), self._addr)
        return True

    def report_sent(self, ntp_time: int) -> None:
        """Keep the sender's RTCP sender-report counters as its own RTP task would."""
        s = self.sender
        s._RTCRtpSender__ntp_timestamp = ntp_time  # type: ignore[attr-defined]
        s._RTCRtpSender__rtp_timestamp = (self.timestamp - FRAME_SAMPLES) & 0xFFFFFFFF  # type: ignore[attr-defined]
        s._RTCRtpSender__packet_count = self.packets  # type: ignore[attr-defined]
        s._RTCRtpSender__octet_count = self.octets  # type: ignore[attr-defined]


class LeanClock:
    """The one 20 ms clock of an event loop: every stream sends one packet per 20 ms.

    The streams are spread over ``PHASES`` evenly spaced phases of the 20 ms period (a joining
    stream takes the emptiest), as real clients' packets arrive at scattered phases: the server
    under test is not handed every session's packet in the same instant (a load pattern no real
    crowd makes). The extra wake-ups cost the generator little (at most 250/s per process). Paced
    on perf_counter from the clock's start; after a stall the missed phases go out back to back
    (as a paced track's sender catches up), and each track's ``max_lag_ms`` records it."""

    _clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LeanClock] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.phases: list[list[LeanStream]] = [[] for _ in range(PHASES)]
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> list[LeanStream]:
        return [stream for phase in self.phases for stream in phase]

    @classmethod
    def current(cls) -> LeanClock:
        loop = asyncio.get_running_loop()
        clock = cls._clocks.get(loop)
        if clock is None:
            clock = cls._clocks[loop] = cls()
        return clock

    def add(self, stream: LeanStream) -> None:
        min(self.phases, key=len).append(stream)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="qa-lean-clock")

    async def _run(self) -> None:
        start = time.perf_counter_ns()
        step = 0
        while any(self.phases):
            phase = self.phases[step % PHASES]
            due = start + step * (TICK_NS // PHASES)
            step += 1
            if not phase:
                continue
            wait_ns = due - time.perf_counter_ns()
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
                lag_ms = 0.0
            else:
                lag_ms = -wait_ns / 1e6
            self.ticks += 1
            self._send(phase, lag_ms)

    @staticmethod
    def _send(phase: list[LeanStream], lag_ms: float) -> None:
        ntp_time = rtc_clock.current_ntp_time()  # once per phase, not twice per packet
        done: list[LeanStream] = []
        for stream in phase:
            track = stream.track
            try:
                sent = track.readyState == "live" and stream.send_next()
            except Exception:  # one broken stream must not stop the clock of every session
                logger.exception("lean clock: stream of SSRC %s stopped", stream.sender._ssrc)
                sent = False
            if not sent:
                done.append(stream)
                continue
            if lag_ms > track.max_lag_ms:
                track.max_lag_ms = lag_ms
            stream.report_sent(ntp_time)
        for stream in done:
            phase.remove(stream)


def attach_lean_sender(pc: RTCPeerConnection, track: LeanOpusTrack) -> None:
    """Send ``track``'s packets on the lean clock once its sender starts; call before the offer."""
    if aiortc.__version__ != AIORTC_VERSION:
        raise RuntimeError(f"qa/lean_send.py reaches into aiortc {AIORTC_VERSION} internals; "
                           f"aiortc {aiortc.__version__} is installed: re-check them, then the pin")
    sender = next((t.sender for t in pc.getTransceivers() if t.sender.track is track), None)
    if sender is None:
        raise ValueError("the track has no sender on this peer connection")
    original = sender.send
    started = False

    async def send(parameters: RTCRtpSendParameters) -> None:
        nonlocal started
        await original(parameters)
        if not started:
            started = True
            LeanClock.current().add(LeanStream(sender, track, parameters))

    setattr(sender, "send", send)  # noqa: B010  # instance override, see module doc
