"""Received-audio analysis for tests, bench and QA: levels, tone power, speech on/off edges.

All times are ``time.perf_counter_ns()`` values.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from av import AudioFrame

FRAME_GAP_NS = 60_000_000  # inter-frame arrival gap counted as an underrun (3 frames of 20 ms)
DEFAULT_ON_DBFS = -45.0  # received frame louder than this = reply audio (paced track sends zeros)
DEFAULT_HOLD_MS = 250.0  # silence this long ends a voiced segment (offset = start of the silence)
HOLE_MIN_MS = 60.0  # silence runs inside a reply at least this long count as holes


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


# ---- received audio --------------------------------------------------------------------------


@dataclass(slots=True)
class Segment:
    onset_ns: int
    offset_ns: int | None = None  # arrival of the first frame of the silence that ended it


class ReceivedAudioMonitor:
    """Energy on/off edges of received audio: an onset is the first voiced frame/window after quiet;
    an offset is where a quiet run of at least ``hold_ms`` began.

    Fed per received frame (``feed``) or per 10 ms window of any chunk (``feed_audio``). Keeps a
    compact frame log (arrival time, voiced) so per-turn analysis (holes, gaps) is a pure
    function over a time window, and lets coroutines wait for onsets/offsets/quiet.
    """

    def __init__(self, on_dbfs: float = DEFAULT_ON_DBFS, hold_ms: float = DEFAULT_HOLD_MS) -> None:
        self.on_dbfs = on_dbfs
        self.hold_ns = int(hold_ms * 1e6)
        self.arrivals: list[int] = []
        self.voiced: list[bool] = []
        self.segments: list[Segment] = []
        self.first_frame_ns: int | None = None
        self._silence_since: int | None = None
        # Waiting coroutines' conditions, checked here as each frame is fed: a waiter's task is
        # woken once, when its condition holds, not at every 20 ms frame to re-check it.
        self._waiters: list[tuple[Callable[[], Any], asyncio.Future[Any]]] = []

    # feeding ------------------------------------------------------------------------------
    def feed(self, arrival_ns: int, pcm: np.ndarray) -> None:
        """One received frame (int16 samples) at its arrival time."""
        self.feed_level(arrival_ns, level_dbfs(pcm))

    def feed_audio(self, audio: AudioFrame | np.ndarray, t_ns: int | None = None,
                   sample_rate: int | None = None) -> None:
        """Feed an AudioFrame (any layout: channels averaged) or mono int16 samples in 10 ms windows.

        A window's time is ``t_ns`` (time of the chunk's first sample, e.g. receipt time) plus
        its offset in the chunk.
        """
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
            self.feed_level(t_ns + start * 1_000_000_000 // sample_rate, level_dbfs(pcm[start : start + win]))

    def feed_level(self, arrival_ns: int, dbfs: float) -> None:
        self.feed_voiced(arrival_ns, dbfs > self.on_dbfs)

    def feed_voiced(self, arrival_ns: int, voiced: bool) -> None:
        """One frame already classified (e.g. by packet size, qa/rtp_tap.py) at its arrival time."""
        if self.first_frame_ns is None:
            self.first_frame_ns = arrival_ns
        self.arrivals.append(arrival_ns)
        self.voiced.append(voiced)
        open_seg = self.segments[-1] if self.segments and self.segments[-1].offset_ns is None else None
        if voiced:
            self._silence_since = None
            if open_seg is None:
                self.segments.append(Segment(onset_ns=arrival_ns))
        else:
            if self._silence_since is None:
                self._silence_since = arrival_ns
            if open_seg is not None and arrival_ns - self._silence_since >= self.hold_ns:
                open_seg.offset_ns = self._silence_since
        self._notify()

    def _notify(self) -> None:
        if not self._waiters:
            return
        waiting = []
        for predicate, future in self._waiters:
            if future.done():  # its wait timed out or was cancelled
                continue
            try:
                value = predicate()
            except Exception as exc:  # noqa: BLE001 - raised in the waiter, as if it had checked itself
                future.set_exception(exc)
                continue
            if value is None:
                waiting.append((predicate, future))
            else:
                future.set_result(value)
        self._waiters = waiting

    # queries ------------------------------------------------------------------------------
    @property
    def onsets(self) -> list[int]:
        return [seg.onset_ns for seg in self.segments]

    @property
    def offsets(self) -> list[int]:
        return [seg.offset_ns for seg in self.segments if seg.offset_ns is not None]

    @property
    def speaking(self) -> bool:
        return bool(self.segments) and self.segments[-1].offset_ns is None

    def onset_after(self, t_ns: int) -> int | None:
        for seg in self.segments:
            if seg.onset_ns >= t_ns:
                return seg.onset_ns
        return None

    def offset_after(self, t_ns: int) -> int | None:
        for seg in self.segments:
            if seg.offset_ns is not None and seg.offset_ns >= t_ns:
                return seg.offset_ns
        return None

    def quiet_since(self) -> int | None:
        """Arrival of the first frame of the current silence (None while voiced / no frames)."""
        if not self.arrivals or self.voiced[-1]:
            return None
        return self._silence_since

    def last_offset(self) -> int | None:
        for seg in reversed(self.segments):
            if seg.offset_ns is not None:
                return seg.offset_ns
        return None

    async def wait(self, predicate: Callable[[], Any], timeout_s: float) -> Any:
        """Wait until ``predicate()`` returns a non-None value (checked now and as each frame is
        fed); raises asyncio.TimeoutError."""
        value = predicate()
        if value is not None:
            return value
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        async with asyncio.timeout(timeout_s):
            return await future

    async def wait_onset(self, after_ns: int, timeout_s: float) -> int:
        return await self.wait(lambda: self.onset_after(after_ns), timeout_s)

    async def wait_offset(self, after_ns: int, timeout_s: float) -> int:
        return await self.wait(lambda: self.offset_after(after_ns), timeout_s)

    async def wait_quiet(self, quiet_ms: float, timeout_s: float) -> int:
        """Wait for ``quiet_ms`` of received silence; returns when that silence began."""
        need = int(quiet_ms * 1e6)

        def check() -> int | None:
            since = self.quiet_since()
            if since is not None and self.arrivals[-1] - since >= need:
                return since
            return None

        return await self.wait(check, timeout_s)

    # per-window analysis ------------------------------------------------------------------
    def window_stats(self, start_ns: int, end_ns: int) -> dict[str, float | int]:
        return window_stats(self.arrivals, self.voiced, start_ns, end_ns)


def window_stats(arrivals: list[int], voiced: list[bool], start_ns: int, end_ns: int) -> dict[str, float | int]:
    """Underruns (arrival gaps > 60 ms) and silence holes (>= 60 ms) inside [start, end]."""
    i0 = bisect.bisect_left(arrivals, start_ns)
    i1 = bisect.bisect_right(arrivals, end_ns)
    gaps = 0
    gap_ms = 0.0
    holes = 0
    hole_ms = 0.0
    run_start: int | None = None
    for i in range(i0, i1):
        if i > i0:
            d = arrivals[i] - arrivals[i - 1]
            if d > FRAME_GAP_NS:
                gaps += 1
                gap_ms += d / 1e6
        if not voiced[i]:
            if run_start is None:
                run_start = arrivals[i]
        else:
            if run_start is not None:
                run = (arrivals[i] - run_start) / 1e6
                if run >= HOLE_MIN_MS:
                    holes += 1
                    hole_ms += run
            run_start = None
    return {
        "frames": max(0, i1 - i0),
        "underruns": gaps,
        "underrun_ms": round(gap_ms, 1),
        "holes": holes,
        "hole_ms": round(hole_ms, 1),
    }


def frame_arrival_stats(arrivals_ns: list[int], pts: list[int], samples: list[int],
                        gap_ns: int = FRAME_GAP_NS, pts_wrap: int = 1 << 32) -> dict[str, float | int]:
    """Underruns and missing audio from received frames (arrival time, RTP-derived pts, samples each).

    ``underruns``: arrival gaps > ``gap_ns`` (what a player fed from this stream would run dry on);
    ``missing_frames``: frames the pts sequence skipped (lost, or dropped by the jitter buffer),
    in frames of the size before the jump; ``pts`` wraps at ``pts_wrap`` (RTP timestamps: 2**32).
    """
    intervals = [b - a for a, b in zip(arrivals_ns, arrivals_ns[1:])]
    gaps = [d for d in intervals if d > gap_ns]
    missing = 0
    backwards = 0
    for i in range(1, len(pts)):
        jump = (pts[i] - pts[i - 1] - samples[i - 1]) % pts_wrap
        if jump > pts_wrap // 2:
            backwards += 1  # an earlier frame after a later one
        elif jump and samples[i - 1]:
            missing += round(jump / samples[i - 1])
    ordered = sorted(intervals)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] / 1e6 if ordered else 0.0
    return {
        "frames": len(arrivals_ns),
        "underruns": len(gaps),
        "underrun_ms": round(sum(gaps) / 1e6, 1),
        "missing_frames": missing,
        "out_of_order": backwards,
        "inter_arrival_p95_ms": round(p95, 2),
        "inter_arrival_max_ms": round(max(intervals, default=0) / 1e6, 2),
    }


def onset_delays_by_pts(sent: list[tuple[int, int]], received: list[tuple[int, int]]) -> list[int]:
    """Delay of each sent onset to the received frame carrying it, matched by pts, not by time order.

    ``sent`` / ``received``: (pts, time_ns) of each onset frame. The receiver's pts differ from the
    sender's by one constant (RTP timestamp mapping): taken as the most common difference over all
    pairs, so a late burst is never paired with the next burst however long the delay. Sent onsets
    with no received frame at that pts are left out.
    """
    if not sent or not received:
        return []
    diffs = collections.Counter(rp - sp for sp, _ in sent for rp, _ in received)
    offset = diffs.most_common(1)[0][0]
    at = dict(received)
    return [at[sp + offset] - st for sp, st in sent if sp + offset in at]
