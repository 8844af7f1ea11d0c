"""Synthetic source tracks and onset detection, for tests, bench and QA clients.

All times are ``time.perf_counter_ns()``. Audio tracks send 20 ms s16 mono frames paced on a
real-time clock (like aiortc's AudioStreamTrack), so they can feed an RTCPeerConnection.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import math
import time
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
    """Sine tone that can be switched on/off; ``onsets_ns`` = when each burst's first frame left recv()."""

    def __init__(self, freq_hz: float = 440.0, sample_rate: int = OUT_RATE, amplitude: float = 0.3) -> None:
        super().__init__(sample_rate)
        if not 0 < amplitude <= 1:
            raise ValueError("amplitude must be in (0, 1]")
        self.freq_hz = freq_hz
        self.amplitude = amplitude
        self.on = False
        self.onsets_ns: list[int] = []
        self.offsets_ns: list[int] = []
        self._was_on = False
        self._phase = 0  # sample index, keeps the sine continuous across frames

    async def play_bursts(self, count: int, on_s: float, off_s: float) -> None:
        """``count`` bursts of ``on_s`` seconds, ``off_s`` apart (onsets land in ``onsets_ns``)."""
        for _ in range(count):
            self.on = True
            await asyncio.sleep(on_s)
            self.on = False
            await asyncio.sleep(off_s)

    async def recv(self) -> AudioFrame:
        await self._pace()
        n = self.samples_per_frame
        if self.on:
            t = (np.arange(self._phase, self._phase + n)) / self.sample_rate
            pcm = (np.sin(2 * np.pi * self.freq_hz * t) * self.amplitude * 32767).astype(np.int16)
            self._phase += n
        else:
            pcm = np.zeros(n, dtype=np.int16)
            self._phase = 0
        now = time.perf_counter_ns()
        if self.on and not self._was_on:
            self.onsets_ns.append(now)
        elif not self.on and self._was_on:
            self.offsets_ns.append(now)
        self._was_on = self.on
        return self._frame(pcm)


def load_wav_48k_mono(path: str | Path) -> np.ndarray:
    """Decode any audio file to 48 kHz mono int16 (PyAV: any rate, channels, sample format)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=OUT_RATE)
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"no audio stream in {path}")
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


class WavFileTrack(PacedAudioSource):
    """Plays WAV files as paced 20 ms frames, silence after the end.

    ``started_ns`` is when the first frame of the first file left recv(); ``file_starts_ns``
    has one entry per file played (so a QA client knows when each file's speech offset went out).
    """

    def __init__(self, path: str | Path | None = None, loop: bool = False) -> None:
        super().__init__(OUT_RATE)
        self.loop = loop
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._current: np.ndarray | None = None
        self._pos = 0
        self.started_ns: int | None = None
        self.file_starts_ns: list[int] = []
        self.file_ends_ns: list[int] = []
        if path is not None:
            self.play(path)

    def play(self, path: str | Path) -> None:
        """Queue another file; it starts when the current one ends (now, if idle)."""
        pcm = load_wav_48k_mono(path)
        if pcm.size == 0:
            raise ValueError(f"no audio samples in {path}")
        self._queue.append(pcm)

    @property
    def idle(self) -> bool:
        """Nothing playing and nothing queued."""
        return self._current is None and not self._queue

    async def recv(self) -> AudioFrame:
        await self._pace()
        n = self.samples_per_frame
        pcm = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n:
            if self._current is None:
                if not self._queue:
                    break
                self._current, self._pos = self._queue.popleft(), 0
                now = time.perf_counter_ns()
                # The file's first sample sits `filled` samples into this frame.
                self.file_starts_ns.append(now + filled * 1_000_000_000 // self.sample_rate)
                if self.started_ns is None:
                    self.started_ns = self.file_starts_ns[-1]
            take = min(n - filled, len(self._current) - self._pos)
            pcm[filled : filled + take] = self._current[self._pos : self._pos + take]
            filled += take
            self._pos += take
            if self._pos >= len(self._current):
                self.file_ends_ns.append(time.perf_counter_ns() + filled * 1_000_000_000 // self.sample_rate)
                if self.loop:
                    self._queue.append(self._current)
                self._current = None
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


# ---- detection --------------------------------------------------------------------------


def level_dbfs(pcm: np.ndarray) -> float:
    """RMS level of int16 samples in dBFS (-inf for digital silence)."""
    if pcm.size == 0:
        return -math.inf
    x = pcm.astype(np.float64) / 32768.0
    rms = math.sqrt(float(np.mean(x * x)))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def tone_power(pcm: np.ndarray, sample_rate: int, freq_hz: float) -> float:
    """Power of the ``freq_hz`` component (Goertzel), relative to full scale.

    A full-scale sine gives 0.5 (amplitude²/2); use ``10*log10`` for dBFS-like numbers.
    """
    n = pcm.size
    if n == 0:
        return 0.0
    x = pcm.astype(np.float64).reshape(-1) / 32768.0
    # Goertzel is a single-bin DFT; with numpy the direct form is faster than the recurrence.
    k = np.arange(n)
    w = 2 * np.pi * freq_hz / sample_rate
    re = float(np.dot(x, np.cos(w * k)))
    im = float(np.dot(x, np.sin(w * k)))
    amplitude = 2 * math.hypot(re, im) / n
    return amplitude * amplitude / 2


class OnsetDetector:
    """Energy on/off edges in a stream of audio chunks.

    Each chunk is split into 10 ms windows; a window's time is the chunk's ``t_ns`` (time of its
    first sample, e.g. receipt time) plus its offset. An onset is the first window at or above
    ``threshold_dbfs`` after quiet; an offset is the first quiet window of a run of ≥ ``hold_ms``.
    """

    def __init__(self, threshold_dbfs: float = -40.0, hold_ms: float = 60.0) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.hold_ns = int(hold_ms * 1e6)
        self.onsets: list[int] = []
        self.offsets: list[int] = []
        self.active = False
        self._quiet_since: int | None = None

    def feed(self, audio: AudioFrame | np.ndarray, t_ns: int | None = None, sample_rate: int | None = None) -> None:
        """Feed an AudioFrame (any layout: channels averaged) or mono int16 samples."""
        if t_ns is None:
            t_ns = time.perf_counter_ns()
        if isinstance(audio, AudioFrame):
            sample_rate = audio.sample_rate
            pcm = audio.to_ndarray()
            channels = len(audio.layout.channels)
            if audio.format.is_planar:
                pcm = pcm.mean(axis=0) if channels > 1 else pcm.reshape(-1)
            else:
                pcm = pcm.reshape(-1, channels).mean(axis=1) if channels > 1 else pcm.reshape(-1)
            if audio.format.name not in ("s16", "s16p"):
                pcm = pcm * 32767.0  # float formats
        else:
            if sample_rate is None:
                raise ValueError("sample_rate is required for raw sample arrays")
            pcm = np.asarray(audio).reshape(-1)
        win = max(1, sample_rate // 100)
        for start in range(0, pcm.size, win):
            window = pcm[start : start + win]
            self._window(level_dbfs(window) >= self.threshold_dbfs, t_ns + start * 1_000_000_000 // sample_rate)

    def _window(self, loud: bool, t: int) -> None:
        if loud:
            self._quiet_since = None
            if not self.active:
                self.active = True
                self.onsets.append(t)
            return
        if not self.active:
            return
        if self._quiet_since is None:
            self._quiet_since = t
        elif t - self._quiet_since >= self.hold_ns:
            self.active = False
            self.offsets.append(self._quiet_since)
            self._quiet_since = None
