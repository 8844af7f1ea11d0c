"""Pre-encoded Opus for the QA load generator: encode each prompt once, replay the packets.

aiortc's RTCRtpSender (1.16, ``_next_encoded_frame``) encodes what a track's recv() returns only
when it is an ``av.Frame``; an ``av.Packet`` is just packetized (``OpusEncoder.pack``: the RTP
timestamp is the packet's pts converted to 1/48000). So a track that returns the packets of a
prompt encoded once per process costs a simulated trainee no resampling, no Opus encoding and
no executor hop per 20 ms frame. Pacing stays real time (``PacedAudioSource``), and the
``Clip`` onset/offset marks are timed as the packet holding them leaves recv(), as with
``WavFileTrack``.
"""

from __future__ import annotations

import collections
import fractions
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.packet import Packet

from qa.audio import OUT_RATE, Clip, PacedAudioSource, load_wav

FRAME_SAMPLES = OUT_RATE // 50  # 20 ms at 48 kHz: the RTP timestamp step
# aiortc's own OpusEncoder settings (96 kbps stereo, VoIP): the server gets the same stream as
# from the PCM path (CELT mode: 3-byte packets of digital silence; SILK at low rates is not so terse).
OPUS_BIT_RATE = 96_000
TIME_BASE = fractions.Fraction(1, OUT_RATE)


@dataclass(frozen=True, slots=True)
class EncodedSound:
    """A sound as 48 kHz mono samples and their 20 ms Opus packets (the last one zero-padded)."""

    pcm: np.ndarray
    packets: tuple[bytes, ...]


def encode_opus(pcm: np.ndarray) -> tuple[bytes, ...]:
    """48 kHz mono int16 → one Opus packet per 20 ms (libopus via PyAV, as aiortc encodes)."""
    n = -(-len(pcm) // FRAME_SAMPLES) * FRAME_SAMPLES
    padded = np.zeros(max(n, FRAME_SAMPLES), dtype=np.int16)
    padded[: len(pcm)] = pcm
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = OPUS_BIT_RATE
    codec.format = "s16"
    codec.layout = "stereo"
    codec.sample_rate = OUT_RATE
    codec.time_base = TIME_BASE
    codec.options = {"application": "voip", "frame_duration": "20"}
    packets: list[bytes] = []
    stereo = np.repeat(padded, 2)  # packed s16: L R L R ...
    for i in range(0, len(padded), FRAME_SAMPLES):
        frame = av.AudioFrame.from_ndarray(stereo[2 * i : 2 * (i + FRAME_SAMPLES)].reshape(1, -1), format="s16",
                                           layout="stereo")
        frame.sample_rate = OUT_RATE
        frame.pts = i
        frame.time_base = TIME_BASE
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]  # the encoder's look-ahead: flush it
    # libopus delays its output by the look-ahead (a few ms): the flush gives the tail back, one
    # packet per 20 ms input frame once the pre-skip packet is accounted for.
    return tuple(packets[: len(padded) // FRAME_SAMPLES])


_SOUNDS: dict[str, EncodedSound] = {}
_SILENCE: list[bytes] = []


def encoded_sound(path: str | Path) -> EncodedSound:
    """The file's samples and packets, decoded and encoded once per process (blocking: call it in
    a worker thread from a loop)."""
    key = str(path)
    sound = _SOUNDS.get(key)
    if sound is None:
        pcm = load_wav(path)
        if pcm.size == 0:
            raise ValueError(f"no audio samples in {path}")
        sound = _SOUNDS[key] = EncodedSound(pcm=pcm, packets=encode_opus(pcm))
    return sound


def silent_packet() -> bytes:
    """One 20 ms Opus packet of digital silence (3 bytes), encoded once and repeated."""
    if not _SILENCE:
        _SILENCE.append(encode_opus(np.zeros(FRAME_SAMPLES * 3, dtype=np.int16))[-1])
    return _SILENCE[0]


class OpusFileTrack(PacedAudioSource):
    """Plays queued pre-encoded sounds as paced 20 ms Opus packets, a silent packet in between.

    Same contract as ``WavFileTrack.play_clip``: each ``Clip`` records when its speech onset and
    offset samples went out. A sound always starts on a packet boundary.
    """

    def __init__(self) -> None:
        super().__init__(OUT_RATE)
        self._silence = silent_packet()
        self._queue: collections.deque[tuple[Clip, tuple[bytes, ...]]] = collections.deque()
        self._current: tuple[Clip, tuple[bytes, ...]] | None = None
        self.clips: list[Clip] = []
        self.packets_sent = 0

    def play_sound(self, sound: EncodedSound, onset_s: float = 0.0, offset_s: float | None = None) -> Clip:
        """Queue a pre-encoded sound, marking the speech onset/offset (seconds into it)."""
        end = len(sound.pcm) if offset_s is None else int(offset_s * OUT_RATE)
        clip = Clip(pcm=sound.pcm, onset=int(onset_s * OUT_RATE), offset=end)
        self._queue.append((clip, sound.packets))
        self.clips.append(clip)
        return clip

    @property
    def idle(self) -> bool:
        return self._current is None and not self._queue

    def next_payload(self, now: int) -> bytes:
        """The next 20 ms packet's payload, leaving at ``now`` (times the clip marks it holds)."""
        if self._current is None and self._queue:
            self._current = self._queue.popleft()
        self.packets_sent += 1
        if self._current is None:
            return self._silence
        clip, packets = self._current
        index = clip.pos // FRAME_SAMPLES
        data = packets[index] if index < len(packets) else self._silence
        if clip.advance(now, 0, min(FRAME_SAMPLES, len(clip.pcm) - clip.pos), OUT_RATE):
            self._current = None
        return data

    async def recv(self) -> Packet:  # aiortc's sender packs an av.Packet as it is
        await self._pace()
        packet = Packet(self.next_payload(time.perf_counter_ns()))
        packet.pts = self._pts
        packet.time_base = self._time_base
        return packet
