"""One 20 ms clock per event loop sends every session's outgoing audio packet, past aiortc's
RTCRtpSender task (aiortc ==1.16.0 internals; ``attach_lean_sender`` refuses another version).

Per 20 ms and per session, aiortc's RTP task awaits the track's recv() with its own timer, builds
an RtpPacket, serializes it with its header extensions (two NTP clock reads), then goes through
three coroutine layers (``RTCDtlsTransport._send_rtp``, ``RTCIceTransport``, aioice's
``Connection.send``) to SRTP-protect and send it. Here one task wakes every 20 ms and, for each
stream, asks its source for the next payload, patches sequence number and timestamp into a
header serialized once, protects it with the transport's SRTP session and sends the datagram
on the nominated ICE pair: a tick is one synchronous pass over all sessions.

The stream is what aiortc would send: same SSRC, payload type, marker bit and mid extension;
sequence numbers and timestamps continue by one and one frame per packet. Not sent: abs-send-time
(a receiver reads it for video bandwidth estimation) and RTP retransmission history (audio
negotiates no NACK). The RTCRtpSender still starts: its RTCP task reports and answers as usual
with the counters kept here; its RTP task parks on the source track's recv() until it stops.

A source may ask for a packet between ticks (``LeanStream.send_now``): the first frame of a
reply leaves as soon as it is ready, the next ones on the shared ticks.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import weakref
from typing import Any, NoReturn, Protocol

import aiortc
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc import clock as rtc_clock
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from aiortc.utils import random32

AIORTC_VERSION = "1.16.0"  # the internals used here were read in this version
TICK_NS = 20_000_000
MAX_LATE_TICKS = 5  # after a loop stall this far behind, skip the missed ticks (no long burst)
log = logging.getLogger(__name__)
_SEQ_TS = struct.Struct("!HI")


class PacketSource(Protocol):
    """What a lean stream sends: one payload per tick, ``frame_samples`` apart in RTP time;
    ``max_lag_ms`` is kept by the clock (its worst lateness against the 20 ms schedule)."""

    frame_samples: int
    max_lag_ms: float

    @property
    def readyState(self) -> str: ...  # noqa: N802  # aiortc's MediaStreamTrack name

    def next_payload(self, now_ns: int) -> bytes: ...


class Parking:
    """Where aiortc's RTP task waits in a clock-sent track's recv(): until the track stops, then
    ``MediaStreamError`` (as from any stopped track), so the task ends and releases the sender."""

    def __init__(self) -> None:
        self._stopped: asyncio.Future[None] | None = None

    async def wait(self, live: bool) -> NoReturn:
        if live:
            if self._stopped is None:
                self._stopped = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._stopped)
        raise MediaStreamError

    def release(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)


class LeanStream:
    """One session's outgoing RTP stream: header serialized once, packets sent by the clock."""

    def __init__(self, sender: RTCRtpSender, source: PacketSource, parameters: RTCRtpSendParameters,
                 clock: LeanClock) -> None:
        self.sender = sender
        self.source = source
        self.clock = clock
        self.transport = sender.transport  # RTCDtlsTransport
        extensions = HeaderExtensionsMap()
        extensions.configure(parameters)
        payload_type = parameters.codecs[0].payloadType
        if payload_type is None:
            raise ValueError("the sender's codec has no payload type (not negotiated)")
        template = RtpPacket(payload_type=payload_type, marker=1, ssrc=sender._ssrc)
        template.extensions.mid = parameters.muxId
        header = template.serialize(extensions)
        self._head, self._tail = header[:2], header[8:]  # around sequence number + timestamp
        self.sequence_number = random_sequence_number()  # as aiortc's sender: no early wrap
        self.timestamp = random32()
        self.packets = 0
        self.octets = 0
        self._addr: tuple[str, int] | None = None
        self._pair: Any = None

    def send_next(self, now_ns: int) -> bool:
        """Protect and send the source's next packet as ``RTCDtlsTransport._send_rtp`` and
        aioice's ``Connection.send`` would; False once the stream is over (track stopped or
        transport no longer connected, when aiortc's RTP task would end too)."""
        dtls = self.transport
        pair = dtls.transport._connection._nominated.get(1)  # the ICE pair carrying the media
        if self.source.readyState != "live" or dtls.state != "connected" or pair is None:
            return False
        payload = self.source.next_payload(now_ns)
        data = self._head + _SEQ_TS.pack(self.sequence_number, self.timestamp) + self._tail + payload
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.source.frame_samples) & 0xFFFFFFFF
        self.packets += 1
        self.octets += len(payload)
        if pair is not self._pair:
            self._pair, self._addr = pair, pair.remote_addr
        pair.protocol.transport.sendto(dtls._tx_srtp.protect(data), self._addr)
        return True

    def send_now(self) -> None:
        """A packet between ticks (a reply's first frame); the next one goes at the next tick."""
        if self.clock.has(self):
            self.clock.send(self, time.perf_counter_ns(), rtc_clock.current_ntp_time())

    def report_sent(self, ntp_time: int) -> None:
        """Keep the sender's RTCP sender-report counters as its own RTP task would."""
        s = self.sender
        s._RTCRtpSender__ntp_timestamp = ntp_time  # type: ignore[attr-defined]
        s._RTCRtpSender__rtp_timestamp = (self.timestamp - self.source.frame_samples) & 0xFFFFFFFF  # type: ignore[attr-defined]
        s._RTCRtpSender__packet_count = self.packets  # type: ignore[attr-defined]
        s._RTCRtpSender__octet_count = self.octets  # type: ignore[attr-defined]


class LeanClock:
    """The 20 ms clock of an event loop: every stream sends one packet per 20 ms.

    The streams may be spread over ``phases`` evenly spaced phases of the period (a joining
    stream takes the emptiest): the QA load generator uses 5, so a server fed by many simulated
    trainees gets their packets at spread-out times as from real clients, not all in one
    instant. Paced on perf_counter; a phase that comes late (a busy loop) goes out at once
    (each source's ``max_lag_ms`` records it), and after a stall of more than
    ``MAX_LATE_TICKS`` periods the missed ones are skipped (``late_resets``)."""

    _clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, LeanClock]] = weakref.WeakKeyDictionary()

    def __init__(self, phases: int = 1) -> None:
        if not 1 <= phases <= 20:
            raise ValueError(f"phases must be 1..20, got {phases}")
        self.phases: list[list[LeanStream]] = [[] for _ in range(phases)]
        self.ticks = 0
        self.late_resets = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> list[LeanStream]:
        return [stream for phase in self.phases for stream in phase]

    @classmethod
    def current(cls, phases: int = 1) -> LeanClock:
        """This event loop's clock with that many phases (made on first use)."""
        clocks = cls._clocks.setdefault(asyncio.get_running_loop(), {})
        clock = clocks.get(phases)
        if clock is None:
            clock = clocks[phases] = cls(phases)
        return clock

    def add(self, stream: LeanStream) -> None:
        min(self.phases, key=len).append(stream)
        if self._task is None or self._task.done():  # ends by itself when no stream is left
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lean-clock")

    def has(self, stream: LeanStream) -> bool:
        return any(stream in phase for phase in self.phases)

    async def _run(self) -> None:
        step_ns = TICK_NS // len(self.phases)
        start = time.perf_counter_ns()
        step = 0
        while any(self.phases):
            index = step
            step += 1
            phase = self.phases[index % len(self.phases)]
            if not phase:
                continue
            now = time.perf_counter_ns()
            wait_ns = start + index * step_ns - now
            lag_ms = 0.0
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
            else:
                lag_ms = -wait_ns / 1e6
                if -wait_ns > MAX_LATE_TICKS * TICK_NS:
                    self.late_resets += 1
                    start = now - index * step_ns  # this phase is due now; the missed ones are skipped
            self.ticks += 1
            now_ns, ntp_time = time.perf_counter_ns(), rtc_clock.current_ntp_time()  # once per phase
            for stream in list(phase):
                self.send(stream, now_ns, ntp_time, lag_ms)

    def send(self, stream: LeanStream, now_ns: int, ntp_time: int, lag_ms: float = 0.0) -> None:
        try:
            sent = stream.send_next(now_ns)
        except Exception:  # one broken stream must not stop the clock of every session
            log.exception("lean clock: stream of SSRC %s stopped", stream.sender._ssrc)
            sent = False
        if sent:
            stream.report_sent(ntp_time)
            if lag_ms > stream.source.max_lag_ms:
                stream.source.max_lag_ms = lag_ms
            return
        for phase in self.phases:
            if stream in phase:
                phase.remove(stream)


def attach_lean_sender(pc: RTCPeerConnection, source: PacketSource, on_stream: Any = None,
                       phases: int = 1) -> None:
    """Send ``source``'s packets on the loop's lean clock (with ``phases``) once its sender
    starts; call after ``pc.addTrack(source)`` and before the offer/answer. ``on_stream(stream)``
    is told the stream."""
    if aiortc.__version__ != AIORTC_VERSION:
        raise RuntimeError(f"media/lean_send.py reaches into aiortc {AIORTC_VERSION} internals; "
                           f"aiortc {aiortc.__version__} is installed: re-check them, then the pin")
    sender = next((t.sender for t in pc.getTransceivers() if t.sender.track is source), None)
    if sender is None:
        raise ValueError("the source has no sender on this peer connection")
    original = sender.send
    started = False

    async def send(parameters: RTCRtpSendParameters) -> None:
        nonlocal started
        await original(parameters)
        if not started:
            started = True
            clock = LeanClock.current(phases)
            stream = LeanStream(sender, source, parameters, clock)
            clock.add(stream)
            if on_stream is not None:
                on_stream(stream)

    setattr(sender, "send", send)  # noqa: B010  # instance override, see the module doc
