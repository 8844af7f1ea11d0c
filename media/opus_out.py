"""The customer's voice sent as ready Opus packets: encoded on the loop, silence never encoded.

Given an ``AudioFrame``, aiortc's RTCRtpSender (1.16) computes the RFC 6465 audio level in a
pure-Python loop over the 960 samples and hops to the default thread pool to run its Opus encoder
(mono → stereo resample, 96 kbps), every 20 ms, silence included. Given an ``av.Packet`` it only
packs it (RTP timestamp = the packet's pts in 1/48000). So ``OpusPacedTrack.recv()`` returns
packets: speech is encoded inline by one libopus encoder per track (mono, VoIP mode: SILK/hybrid
at speech bitrates), and the digital silence between replies is one cached 3-byte packet.

The QA light receive path (qa/rtp_tap.py) judges a packet silent by its size (≤ 8 bytes), so:
- the silence packet is CELT digital silence (3 bytes; hybrid mode codes zeros in tens of bytes);
- a frame of digital zeros inside an utterance (a TTS pause) is sent as that packet too;
- after sound, one frame of zeros still goes through the encoder: libopus holds 312 samples
  (6.5 ms) of lookahead, and that packet carries them out as a fading tail (the old path sent
  one or two such tails as well; the tap decodes packets at size edges, so it judges it right).
"""

from __future__ import annotations

import fractions
import logging
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection
from av import AudioFrame

from media.lean_send import LeanStream, Parking, attach_lean_sender
from media.outbound import FrameCallback, PacedAudioTrack
from media.settings import OPUS_FRAME_MS, MediaSettings

log = logging.getLogger(__name__)

SILENT_PACKET_MAX_BYTES = 8  # the size a receiver may call digital silence (qa/rtp_tap.py's light detector does)
_SILENCE: dict[int, bytes] = {}


def silence_packet(frame_ms: int = 20) -> bytes:
    """One Opus packet of ``frame_ms`` of digital silence (CELT, 3 bytes), made once per size."""
    packet = _SILENCE.get(frame_ms)
    if packet is None:
        # CELT-only ("lowdelay"): its digital-silence packet is a TOC byte and two bytes of range
        # coder; the encoder needs a couple of frames of zeros to settle on it.
        codec = _encoder(bitrate=32_000, complexity=0, frame_ms=frame_ms, application="lowdelay")
        n = 48 * frame_ms
        packets: list[bytes] = []
        for i in range(4):
            packets += [bytes(p) for p in codec.encode(_frame(np.zeros(n, np.int16), i * n))]
        packet = packets[-1]
        if len(packet) > SILENT_PACKET_MAX_BYTES:
            raise RuntimeError(f"libopus silence packet is {len(packet)} bytes (> {SILENT_PACKET_MAX_BYTES})")
        _SILENCE[frame_ms] = packet
    return packet


class OpusPacedTrack(PacedAudioTrack):
    """``PacedAudioTrack`` whose recv() returns one 20 ms ``av.Packet`` (Opus) per frame.

    Packet pts count samples at 48 kHz from 0 (time_base 1/48000), one frame apart, whatever
    the encoder's own pts (it starts at minus its lookahead and is not used).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 48_000,
        frame_ms: int = 20,
        on_frame: FrameCallback | None = None,
        bitrate: int = 48_000,
        complexity: int = 5,
    ) -> None:
        if sample_rate != 48_000:
            raise ValueError("OpusPacedTrack sends 48 kHz (the Opus RTP clock)")
        if frame_ms not in OPUS_FRAME_MS:
            raise ValueError(f"frame_ms={frame_ms} is not an Opus frame duration {OPUS_FRAME_MS}")
        super().__init__(sample_rate=sample_rate, frame_ms=frame_ms, on_frame=on_frame)
        self._encoder = _encoder(bitrate=bitrate, complexity=complexity, frame_ms=frame_ms, application="voip")
        self._silence = silence_packet(frame_ms)
        self._zeros = np.zeros(self.samples_per_frame, np.int16)
        self._tail = False  # the encoder holds lookahead of sound not sent yet
        self.stats.update({"encoded": 0, "silent_packets": 0, "encoded_bytes": 0})

    @classmethod
    def from_settings(cls, settings: MediaSettings, on_frame: FrameCallback | None = None) -> "OpusPacedTrack":
        return cls(sample_rate=settings.output_sample_rate, frame_ms=settings.output_frame_ms, on_frame=on_frame,
                   bitrate=settings.opus_bitrate, complexity=settings.opus_complexity)

    async def recv(self) -> av.Packet:  # type: ignore[override]  # aiortc's sender takes Frame | Packet
        uid, pcm, pts = await self._next_pcm()
        packet = av.Packet(self._payload(uid, pcm, pts))
        packet.pts = pts
        packet.time_base = self._time_base
        return packet

    def _payload(self, uid: str | None, pcm: np.ndarray, pts: int) -> bytes:
        if uid is not None and pcm.any():
            self._tail = True
            return self._encode(pcm, pts)
        if self._tail:
            self._tail = False
            return self._encode(self._zeros, pts)  # flush the lookahead: the sound's last 6.5 ms
        self.stats["silent_packets"] += 1
        return self._silence

    def _encode(self, pcm: np.ndarray, pts: int) -> bytes:
        packets = self._encoder.encode(_frame(pcm, pts))
        self.stats["encoded"] += 1
        if len(packets) != 1:  # libopus codes each whole frame at once; never seen otherwise
            log.warning("opus encoder returned %d packets for one frame", len(packets))
            if not packets:
                return self._silence
        payload = bytes(packets[-1])
        self.stats["encoded_bytes"] += len(payload)
        return payload


class ClockedOpusTrack(OpusPacedTrack):
    """``OpusPacedTrack`` whose packets the event loop's shared 20 ms clock sends
    (media/lean_send.py): ``next_payload()`` at each tick instead of a paced recv() per session.
    aiortc's RTP task parks on recv() until the track stops."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frame_samples = self.samples_per_frame  # RTP timestamp step per packet
        self.max_lag_ms = 0.0  # the clock's worst lateness sending this track
        self._parking = Parking()

    def next_payload(self, now_ns: int) -> bytes:
        uid, pcm, pts = self.emit_frame()
        return self._payload(uid, pcm, pts)

    def bind(self, stream: LeanStream) -> None:
        self.on_ready = stream.send_now  # a reply's first frame leaves at once, not at the next tick

    async def recv(self) -> av.Packet:  # type: ignore[override]  # never returns: the clock sends
        await self._parking.wait(self.readyState == "live")

    def stop(self) -> None:
        super().stop()
        self._parking.release()


def output_track(settings: MediaSettings, on_frame: FrameCallback | None = None) -> PacedAudioTrack:
    """The customer's voice track the settings ask for: inline Opus on the shared clock, inline
    Opus paced per session, or frames aiortc encodes."""
    if settings.output_opus_inline and settings.output_shared_clock:
        return ClockedOpusTrack.from_settings(settings, on_frame=on_frame)
    if settings.output_opus_inline:
        return OpusPacedTrack.from_settings(settings, on_frame=on_frame)
    return PacedAudioTrack.from_settings(settings, on_frame=on_frame)


def add_output_track(pc: RTCPeerConnection, track: PacedAudioTrack) -> None:
    """``pc.addTrack(track)``, and a clocked track's sender joins the shared clock when it starts."""
    pc.addTrack(track)
    if isinstance(track, ClockedOpusTrack):
        attach_lean_sender(pc, track, on_stream=track.bind)


def _encoder(*, bitrate: int, complexity: int, frame_ms: int, application: str) -> av.AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.bit_rate = bitrate
    codec.format = "s16"
    codec.layout = "mono"
    codec.sample_rate = 48_000
    codec.time_base = fractions.Fraction(1, 48_000)
    codec.options = {"application": application, "compression_level": str(complexity),
                     "frame_duration": str(frame_ms)}
    codec.open()
    return codec


def _frame(pcm: np.ndarray, pts: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 48_000
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, 48_000)
    return frame
