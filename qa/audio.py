"""Synthetic source tracks and WAV loading, for tests, bench and QA clients (detection: qa/detect.py).

All times are ``time.perf_counter_ns()``. Audio tracks send 20 ms s16 mono frames paced on a
real-time clock (like aiortc's AudioStreamTrack), so they can feed an RTCPeerConnection.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import fractions
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

FRAME_MS = 20
OUT_RATE = 48_000


class PacedAudioSource(MediaStreamTrack):
    """Base of the test/QA sources: 20 ms mono frames paced on perf_counter.

    ``max_lag_ms`` is the worst lateness against the real-time schedule (an overloaded client
    shows up there)."""

    kind = "audio"

    def __init__(self, sample_rate: int = OUT_RATE) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.samples_per_frame = sample_rate * FRAME_MS // 1000
        self._time_base = fractions.Fraction(1, sample_rate)
        self._start_ns: int | None = None
        self._pts = 0
        self.max_lag_ms = 0.0

    async def _pace(self) -> None:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start_ns is None:
            self._start_ns = time.perf_counter_ns()
            return
        self._pts += self.samples_per_frame
        due = self._start_ns + self._pts * 1_000_000_000 // self.sample_rate
        wait_ns = due - time.perf_counter_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        else:
            self.max_lag_ms = max(self.max_lag_ms, -wait_ns / 1e6)

    def _frame(self, pcm: np.ndarray) -> AudioFrame:
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = self._time_base
        return frame


class ToneTrack(PacedAudioSource):
    """Sine tone switched by ``sounding`` (not ``on``: that is the track's event-emitter method);
    ``onsets_ns`` = when each burst's first frame left recv()."""

    def __init__(self, freq_hz: float = 440.0, sample_rate: int = OUT_RATE, amplitude: float = 0.3) -> None:
        super().__init__(sample_rate)
        if not 0 < amplitude <= 1:
            raise ValueError("amplitude must be in (0, 1]")
        self.freq_hz = freq_hz
        self.amplitude = amplitude
        self.sounding = False
        self.onsets_ns: list[int] = []
        self.offsets_ns: list[int] = []
        self._was_on = False
        self._phase = 0  # sample index, keeps the sine continuous across frames

    async def play_bursts(self, count: int, on_s: float, off_s: float) -> None:
        """``count`` bursts of ``on_s`` seconds, ``off_s`` apart (onsets land in ``onsets_ns``)."""
        for _ in range(count):
            self.sounding = True
            await asyncio.sleep(on_s)
            self.sounding = False
            await asyncio.sleep(off_s)

    async def recv(self) -> AudioFrame:
        await self._pace()
        n = self.samples_per_frame
        if self.sounding:
            t = (np.arange(self._phase, self._phase + n)) / self.sample_rate
            pcm = (np.sin(2 * np.pi * self.freq_hz * t) * self.amplitude * 32767).astype(np.int16)
            self._phase += n
        else:
            pcm = np.zeros(n, dtype=np.int16)
            self._phase = 0
        now = time.perf_counter_ns()
        if self.sounding and not self._was_on:
            self.onsets_ns.append(now)
        elif not self.sounding and self._was_on:
            self.offsets_ns.append(now)
        self._was_on = self.sounding
        return self._frame(pcm)


class AudioFileMissing(FileNotFoundError, ValueError):
    """No such audio file (a ValueError too: callers treat every bad input file alike)."""


def load_wav(path: str | Path) -> np.ndarray:
    """Decode any audio file to 48 kHz mono int16 (PyAV: any rate, channels, sample format).

    A missing file raises ``AudioFileMissing``; an unreadable one ``ValueError`` with the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioFileMissing(errno.ENOENT, f"audio file not found: {path}")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=OUT_RATE)
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ValueError(f"{path}: no audio stream")
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise ValueError(f"{path}: not a readable WAV file ({exc})") from None
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


@dataclass(slots=True, eq=False)
class Clip:
    """One queued sound and when its marked samples actually left ``recv()``.

    Times are taken per frame as it leaves recv() (not start + offset: after an event-loop stall
    the sender bursts to catch up, and a computed time would be wrong).
    """

    pcm: np.ndarray
    onset: int = 0  # sample index of the speech onset / offset in the sound
    offset: int = 0
    pos: int = 0
    start_ns: int | None = None
    onset_ns: int | None = None
    offset_ns: int | None = None
    end_ns: int | None = None

    def advance(self, now: int, filled: int, take: int, rate: int) -> bool:
        """``take`` samples from ``pos`` leave recv() at ``now``, ``filled`` samples into the frame:
        time the marks they contain; True when the sound is over."""
        # A mark at the very end (offset == len) is timed with the sound's end below.
        for name, mark in (("start_ns", 0), ("onset_ns", self.onset), ("offset_ns", self.offset)):
            if getattr(self, name) is None and self.pos <= mark < self.pos + take:
                setattr(self, name, now + (filled + mark - self.pos) * 1_000_000_000 // rate)
        self.pos += take
        if self.pos < len(self.pcm):
            return False
        self.end_ns = now + (filled + take) * 1_000_000_000 // rate
        if self.offset_ns is None:
            self.offset_ns = self.end_ns
        return True


class WavFileTrack(PacedAudioSource):
    """Plays queued sounds (WAV files or samples) as paced 20 ms frames, silence in between.

    ``file_starts_ns`` / ``file_ends_ns`` have one entry per sound played; each ``Clip`` returned
    by ``play_clip`` also records when its speech onset/offset samples went out (QA).
    """

    def __init__(self, path: str | Path | None = None, loop: bool = False) -> None:
        super().__init__(OUT_RATE)
        self.loop = loop
        self._queue: collections.deque[Clip] = collections.deque()
        self._clip: Clip | None = None
        self.clips: list[Clip] = []
        if path is not None:
            self.play(path)

    def play(self, path: str | Path) -> Clip:
        """Queue a file; it starts when the current sound ends (now, if idle)."""
        pcm = load_wav(path)
        if pcm.size == 0:
            raise ValueError(f"no audio samples in {path}")
        return self.play_clip(pcm)

    def play_clip(self, pcm: np.ndarray, onset_s: float = 0.0, offset_s: float | None = None) -> Clip:
        """Queue samples, marking the speech onset/offset (seconds into ``pcm``) to time them."""
        rate = self.sample_rate
        end = len(pcm) if offset_s is None else int(offset_s * rate)
        clip = Clip(pcm=pcm, onset=int(onset_s * rate), offset=end)
        self._queue.append(clip)
        self.clips.append(clip)
        return clip

    @property
    def idle(self) -> bool:
        """Nothing playing and nothing queued."""
        return self._clip is None and not self._queue

    @property
    def file_starts_ns(self) -> list[int]:
        return [c.start_ns for c in self.clips if c.start_ns is not None]

    @property
    def file_ends_ns(self) -> list[int]:
        return [c.end_ns for c in self.clips if c.end_ns is not None]

    @property
    def started_ns(self) -> int | None:
        starts = self.file_starts_ns
        return starts[0] if starts else None

    async def recv(self) -> AudioFrame:
        await self._pace()
        now = time.perf_counter_ns()
        n, rate = self.samples_per_frame, self.sample_rate
        pcm = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n:
            if self._clip is None:
                if not self._queue:
                    break
                self._clip = self._queue.popleft()
            clip = self._clip
            take = min(n - filled, len(clip.pcm) - clip.pos)
            pcm[filled : filled + take] = clip.pcm[clip.pos : clip.pos + take]
            done = clip.advance(now, filled, take, rate)
            filled += take
            if done:
                self._clip = None
                if self.loop:
                    self.play_clip(clip.pcm, clip.onset / rate, clip.offset / rate)
        return self._frame(pcm)


# ---- video ------------------------------------------------------------------------------

_BITS = 16
_BLOCK = 16  # each counter bit is a 16x16 block: survives VP8 at low bitrate


class SyntheticVideoTrack(MediaStreamTrack):
    """Paced yuv420p frames; the frame counter is drawn as 16 black/white blocks in the top row."""

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 15) -> None:
        super().__init__()
        if width < _BITS * _BLOCK or height < 2 * _BLOCK or width % 2 or height % 2:
            raise ValueError(f"need even width ≥ {_BITS * _BLOCK} and height ≥ {2 * _BLOCK}")
        self.width, self.height, self.fps = width, height, fps
        self.count = 0
        self._start_ns: int | None = None
        self.sent_ns: list[int] = []  # only the last 1000 kept

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start_ns is None:
            self._start_ns = time.perf_counter_ns()
        else:
            due = self._start_ns + self.count * 1_000_000_000 // self.fps
            wait = (due - time.perf_counter_ns()) / 1e9
            if wait > 0:
                await asyncio.sleep(wait)
        h, w = self.height, self.width
        yuv = np.empty((h * 3 // 2, w), dtype=np.uint8)
        yuv[:h] = 60 + (self.count * 4) % 120  # slowly changing grey: visibly "live"
        yuv[h:] = 128
        for bit in range(_BITS):
            on = (self.count >> bit) & 1
            yuv[0:_BLOCK, bit * _BLOCK : (bit + 1) * _BLOCK] = 235 if on else 16
        frame = VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = self.count * 90_000 // self.fps
        frame.time_base = fractions.Fraction(1, 90_000)
        self.count += 1
        self.sent_ns.append(time.perf_counter_ns())
        if len(self.sent_ns) > 1000:
            del self.sent_ns[:500]
        return frame


def decode_frame_counter(frame: VideoFrame) -> int:
    """Read back the counter SyntheticVideoTrack drew (block centres, threshold at mid-grey)."""
    y = frame.to_ndarray(format="yuv420p")
    value = 0
    c = _BLOCK // 2
    for bit in range(_BITS):
        if y[c, bit * _BLOCK + c] > 125:
            value |= 1 << bit
    return value
