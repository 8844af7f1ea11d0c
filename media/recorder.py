"""Session audio recorder: stereo WAV, trainee/streamer left, customer right, aligned on t_ns.

The event loop only appends to a bounded deque (never blocks, wakes nothing; when full, a chunk
is dropped and counted). The recorder's writer thread takes what has piled up every
``FLUSH_INTERVAL_S`` (and at close), resamples, aligns and writes it in one go: a thread wake-up,
a queue lock and a file write per 20 ms chunk had cost more CPU than all of a practice
session's other work (bench/bench_profile.py --record). Alignment is on the server clock: left
chunks are stamped at receipt, right frames when they leave the paced track.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import wave
from pathlib import Path

import av
import numpy as np
from av import AudioFrame

log = logging.getLogger(__name__)

LEFT, RIGHT = 0, 1
_JITTER_TOLERANCE_S = 0.06  # a chunk this much later than the channel's end is still contiguous
_LAG_LIMIT_S = 1.0  # a channel this far behind the other is taken as silent up to there
_QUEUE_MAX = 4_000  # items (~40 s of 20 ms frames on both channels): bounded memory
FLUSH_INTERVAL_S = 0.25  # the writer's batch period: a file only needs its audio in the end


class _Channel:
    """One channel's pending samples, at absolute sample positions from t0."""

    def __init__(self) -> None:
        self.base = 0  # absolute position of buf[0]
        self.parts: list[np.ndarray] = []
        self.end = 0  # absolute position after the last sample placed
        self.resamplers: dict[int, av.AudioResampler] = {}

    def place(self, pcm: np.ndarray, expected: int, written: int, tolerance: int) -> None:
        start = self.end
        if expected - self.end > tolerance:  # a real pause (silence-filled), not jitter
            start = expected
        start = max(start, written)  # never before what is already on disk
        if start > self.end:
            if not self.parts:
                self.base = start
            else:
                self.parts.append(np.zeros(start - self.end, dtype=np.int16))
        elif not self.parts:
            self.base = start
        self.parts.append(pcm)
        self.end = start + pcm.size

    def take(self, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi) (zeros where nothing was placed); drops everything before hi."""
        out = np.zeros(hi - lo, dtype=np.int16)
        if self.parts:
            buf = np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
            a, b = max(lo, self.base), min(hi, self.end)
            if b > a:
                out[a - lo : b - lo] = buf[a - self.base : b - self.base]
            rest = buf[max(hi - self.base, 0) :]
            self.parts = [rest] if rest.size else []
            self.base = max(self.base, hi)
            if not self.parts:
                self.base = self.end = max(self.end, hi)
        else:
            self.base = self.end = max(self.end, hi)
        return out


class SessionRecorder:
    """``add_left``/``add_right`` mono int16 chunks stamped with perf_counter_ns; ``close()`` → path."""

    def __init__(self, path: str | Path, sample_rate: int = 16_000, t0_ns: int | None = None) -> None:
        if not 8_000 <= sample_rate <= 48_000:
            raise ValueError(f"unsupported sample rate {sample_rate}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self.t0_ns = time.perf_counter_ns() if t0_ns is None else t0_ns
        self.frames_written = 0
        self.dropped_chunks = 0
        # deque append/popleft are atomic: the loop appends, the writer pops, no lock taken.
        self._pending: collections.deque[tuple[int, np.ndarray, int, int]] = collections.deque()
        self._closing = threading.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._wav = wave.open(str(self.path), "wb")
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self._channels = (_Channel(), _Channel())
        self._thread = threading.Thread(target=self._writer, name=f"recorder-{self.path.name}", daemon=True)
        self._thread.start()

    @property
    def duration_s(self) -> float:
        return self.frames_written / self.sample_rate

    def add_left(self, pcm16: np.ndarray, t_ns: int, sample_rate: int | None = None) -> None:
        """Trainee/streamer audio received at ``t_ns`` (at ``sample_rate``, default the recorder's)."""
        self._put(LEFT, pcm16, t_ns, sample_rate)

    def add_right(self, pcm16: np.ndarray, t_ns: int, sample_rate: int | None = None) -> None:
        """Customer audio sent at ``t_ns`` (PacedAudioTrack's on_frame gives 48 kHz frames)."""
        self._put(RIGHT, pcm16, t_ns, sample_rate)

    def on_output_frame(self, utterance_id: str | None, pcm16: np.ndarray, t_ns: int) -> None:
        """Ready-made ``PacedAudioTrack(on_frame=...)`` callback at 48 kHz. The track's silence
        between replies (no utterance) is not queued: the writer fills the gap with zeros."""
        if utterance_id is not None:
            self._put(RIGHT, pcm16, t_ns, 48_000)

    def _put(self, channel: int, pcm16: np.ndarray, t_ns: int, sample_rate: int | None) -> None:
        if self._closed:
            return
        rate = self.sample_rate if sample_rate is None else sample_rate
        if len(self._pending) >= _QUEUE_MAX:  # never block the loop: a stalled disk loses audio, not latency
            self.dropped_chunks += 1
            return
        self._pending.append((channel, np.asarray(pcm16, dtype=np.int16).reshape(-1), t_ns, rate))

    async def close(self) -> Path:
        """Write everything still pending and close the file; returns its path."""
        if not self._closed:
            self._closed = True
            self._closing.set()
            await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise RuntimeError(f"recording {self.path} failed: {self._error}") from self._error
        return self.path

    # ---- writer thread --------------------------------------------------------------------

    def _writer(self) -> None:
        try:
            while True:
                closing = self._closing.wait(FLUSH_INTERVAL_S)
                for _ in range(len(self._pending)):  # what is there now; later chunks wait a period
                    self._place(*self._pending.popleft())
                self._write_ready(final=closing)
                if closing:
                    break
        except BaseException as exc:  # reported by close()
            self._error = exc
            log.exception("recorder %s failed", self.path)
        finally:
            try:
                self._wav.close()
            except Exception:
                log.exception("closing %s failed", self.path)

    def _place(self, channel: int, pcm: np.ndarray, t_ns: int, rate: int) -> None:
        ch = self._channels[channel]
        if rate != self.sample_rate:
            pcm = self._resample(ch, pcm, rate)
            if pcm.size == 0:
                return
        expected = max(0, (t_ns - self.t0_ns) * self.sample_rate // 1_000_000_000)
        ch.place(pcm, expected, self.frames_written, int(_JITTER_TOLERANCE_S * self.sample_rate))

    def _resample(self, ch: _Channel, pcm: np.ndarray, rate: int) -> np.ndarray:
        resampler = ch.resamplers.get(rate)
        if resampler is None:
            resampler = ch.resamplers[rate] = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)

    def _write_ready(self, final: bool) -> None:
        left, right = self._channels
        if final:
            upto = max(left.end, right.end)
        else:
            upto = min(left.end, right.end)
            lag = int(_LAG_LIMIT_S * self.sample_rate)
            upto = max(upto, max(left.end, right.end) - lag)  # a silent channel must not hold up the file
        if upto <= self.frames_written:
            return
        lo = self.frames_written
        stereo = np.column_stack((left.take(lo, upto), right.take(lo, upto)))
        self._wav.writeframes(stereo.tobytes())
        self.frames_written = upto
