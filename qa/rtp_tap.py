"""Light receive path of the QA load generator: voiced/unvoiced per 20 ms from the Opus packet
size, taken at the RTP level, instead of decoding the reply audio.

The server's paced track sends digital silence between replies, and aiortc's Opus encoder
(96 kbps, CELT) turns a 20 ms frame of zeros into a 3-byte packet, while any sound, even a ±1
sample dither, costs 80+ bytes. So ``len(payload) > SILENT_OPUS_MAX_BYTES`` is "not digital
silence": what the energy detector calls voiced, except for sound quieter than its -45 dBFS
threshold. There is such sound at the edges: when a reply stops, the encoder still sends one or
two full-size packets of fading tail (measured: -49 and -83 dBFS) before its 3-byte silence,
and a soft attack may start below the threshold. So a packet next to a size edge (the one after
a silent packet, or one with a silent packet among the next ``prefetch``) is decoded and judged
by its energy like the decoding client does; the packets between edges are never decoded.
tests/test_qa.py checks both detectors see the same onsets and offsets on a real run.

``RtpVoiceTap.attach`` replaces one receiver's ``_handle_rtp_packet`` (aiortc ==1.16.0, pinned:
``RTCDtlsTransport`` dispatches each SRTP-decrypted packet there). The tap sees every packet
before aiortc's jitter buffer and decoder thread; without ``passthrough`` the packet goes no
further: no jitter buffer, no Opus decode, no thread hop and no frame objects per 20 ms, and no
RTCP receiver reports (the server does not use a trainee's). A packet's frame is dated when
the receive jitter buffer (media/jitter.py, installed by media/peer.py with its prefetch) would
release it to the decoder on an in-order stream: on the arrival of the packet ``prefetch``
sequence numbers later, so onsets and offsets land where the decoding client hears them (after
a lost packet this tap does not wait the buffer's ``late_packets`` for it).

Without ``passthrough``, once the first packet came through aiortc and nothing is queued behind
it, the tap takes the stream's packets straight from the socket (``datagram_received`` of the
aioice protocol of the nominated ICE pair, overridden on the instance): SRTP decrypted there
with the transport's own session, the payload cut from the header by hand. That skips, per
packet, the STUN parse attempt, aiortc's receive queue and the wake-up of its DTLS task,
RtpPacket parsing and routing. Every other datagram (STUN, DTLS, RTCP, other SSRCs) still goes
aioice's and aiortc's way. Pinned too: ``RTCDtlsTransport._rx_srtp``,
``RTCIceTransport._connection``, aioice's ``_nominated`` and ``_queue``.
"""

from __future__ import annotations

import collections
import fractions
import time
from typing import Any

import av
import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.rtp import RtpPacket

from media.opus_out import SILENT_PACKET_MAX_BYTES
from media.peer import get_jitter_prefetch
from qa.detect import ReceivedAudioMonitor, level_dbfs

# CELT digital silence is 3 bytes; sound is tens to hundreds. One bound with the server's
# silence packet (media/opus_out.py checks its packet against it).
SILENT_OPUS_MAX_BYTES = SILENT_PACKET_MAX_BYTES
WARMUP_PACKETS = 16  # a fresh decoder's band-energy prediction has settled after ~16 frames
_TIME_BASE = fractions.Fraction(1, 48_000)


def rtp_payload(packet: bytes) -> bytes | None:
    """The payload of a decrypted RTP packet (past CSRCs, header extension and padding), None
    when the header is malformed (as ``RtpPacket.parse`` would reject it)."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return None
    pos = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if len(packet) < pos + 4:
            return None
        pos += 4 + 4 * int.from_bytes(packet[pos + 2 : pos + 4], "big")
    end = len(packet)
    if packet[0] & 0x20:
        end -= packet[-1]
        if packet[-1] == 0:
            return None
    return packet[pos:end] if pos <= end else None


def opus_voiced(payload: bytes) -> bool:
    """A 20 ms Opus packet that carries sound (not the encoder's digital-silence packet)."""
    return len(payload) > SILENT_OPUS_MAX_BYTES


class RtpVoiceTap:
    """Feeds ``monitor`` from one audio receiver's RTP packets; counts received and lost packets."""

    def __init__(self, monitor: ReceivedAudioMonitor, prefetch: int | None = None,
                 passthrough: bool = False) -> None:
        self.monitor = monitor
        self.prefetch = get_jitter_prefetch() if prefetch is None else prefetch
        self.passthrough = passthrough  # also hand packets on to aiortc (decode): validation only
        self.received = 0
        self.lost = 0
        self.late = 0  # duplicates / out of order (dropped here; none on a healthy link)
        self.payload_bytes = 0
        self.decoded = 0  # packets decoded at sound/silence edges
        self.fast = False  # packets taken straight off the socket (see module doc)
        self._max_seq: int | None = None
        self._pending: collections.deque[tuple[int, bytes, bool]] = collections.deque()
        self._recent: collections.deque[tuple[int, bytes, bool]] = collections.deque(  # seq, payload, after a gap
            maxlen=WARMUP_PACKETS + self.prefetch + 1)
        self._prev_voiced: bool | None = None
        self._decoder: Any = None
        self._decoded_seq: int | None = None

    def on_packet(self, seq: int, payload: bytes, arrival_ns: int) -> None:
        """One RTP packet (sequence number, Opus payload) at its arrival time."""
        if not payload:
            return  # padding only
        step = 1
        if self._max_seq is not None:
            step = (seq - self._max_seq) & 0xFFFF
            if step == 0 or step >= 0x8000:
                self.late += 1
                return
            self.lost += step - 1
        self._max_seq = seq
        self.received += 1
        self.payload_bytes += len(payload)
        self._recent.append((seq, payload, step > 1))
        self._pending.append((seq, payload, opus_voiced(payload)))
        while len(self._pending) > self.prefetch:
            self.monitor.feed_voiced(arrival_ns, self._release())

    def _release(self) -> bool:
        """The oldest pending packet's verdict: its size, or its decoded energy next to an edge."""
        seq, _payload, voiced = self._pending.popleft()
        if voiced and (self._prev_voiced is not True or any(not v for _, _, v in self._pending)):
            level = self._level(seq)
            voiced = level is None or level > self.monitor.on_dbfs
        self._prev_voiced = voiced
        return voiced

    def _level(self, seq: int) -> float | None:
        """dBFS of packet ``seq`` decoded in context: the decoder carries on from the last packet
        it decoded when that one is still in the recent window, else a fresh one warms up on it.
        None when the payload does not decode (the size verdict stands)."""
        recent = list(self._recent)
        seqs = [s for s, _, _ in recent]
        end = seqs.index(seq)
        first = max((i for i in range(end + 1) if recent[i][2]), default=0)  # no warm-up across a gap
        if self._decoded_seq in seqs[first:end]:
            start = seqs.index(self._decoded_seq) + 1
        else:
            start = first
            self._decoder = av.CodecContext.create("libopus", "r")
            self._decoder.format, self._decoder.layout, self._decoder.sample_rate = "s16", "stereo", 48_000
        level: float | None = None
        self._decoded_seq = None
        for _seq, payload, _gap in recent[start : end + 1]:
            packet = av.Packet(payload)
            packet.pts, packet.time_base = self.decoded * 960, _TIME_BASE
            self.decoded += 1
            try:
                frames = self._decoder.decode(packet)
            except av.FFmpegError:
                return None
            level = level_dbfs(frames[-1].to_ndarray()) if frames else None
        self._decoded_seq = seq
        return level

    def attach(self, receiver: RTCRtpReceiver) -> None:
        original = receiver._handle_rtp_packet

        async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
            self.on_packet(packet.sequence_number, packet.payload, time.perf_counter_ns())
            if self.passthrough:
                await original(packet, arrival_time_ms=arrival_time_ms)
            elif not self.fast:
                self._go_fast(receiver, packet.ssrc)

        setattr(receiver, "_handle_rtp_packet", handle)  # noqa: B010  # instance override, see module doc

    def _go_fast(self, receiver: RTCRtpReceiver, ssrc: int) -> None:
        """From the next datagram on, take this stream's SRTP packets as the nominated ICE
        pair's socket receives them (see module doc). Only once nothing is queued behind this
        packet, so the fast path never overtakes a queued one."""
        dtls = receiver.transport
        connection = dtls.transport._connection  # aioice Connection of the RTCIceTransport
        pair = connection._nominated.get(1)  # the ICE pair carrying the media
        if not connection._queue.empty() or dtls._rx_srtp is None or pair is None:
            return
        protocol = pair.protocol
        original = protocol.datagram_received
        srtp, key = dtls._rx_srtp, ssrc.to_bytes(4, "big")

        def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
            if not (len(data) > 12 and 127 < data[0] < 192 and not 192 <= data[1] <= 208 and data[8:12] == key):
                original(data, addr)  # STUN, DTLS, RTCP, other streams: aioice's and aiortc's way
                return
            try:
                plain = srtp.unprotect(data)
            except pylibsrtp.Error:
                return  # as aiortc: an unauthenticated packet is dropped
            payload = rtp_payload(plain)
            if payload is not None:
                self.on_packet(int.from_bytes(plain[2:4], "big"), payload, time.perf_counter_ns())

        setattr(protocol, "datagram_received", datagram_received)  # noqa: B010  # instance override
        self.fast = True

    def attach_audio(self, pc: RTCPeerConnection) -> None:
        """Tap the (first) audio transceiver's receiver; call before the offer is sent."""
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "audio":
                self.attach(transceiver.receiver)
                return
        raise ValueError("no audio transceiver to tap")

    def stats(self) -> dict[str, Any]:
        return {"received": self.received, "lost": self.lost, "late": self.late,
                "payload_bytes": self.payload_bytes, "decoded": self.decoded, "fast": self.fast}
