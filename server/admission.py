"""Admission by real capacity: refuse new sessions when this process is already full.

Full means one of: ``server.max_sessions`` live peers, the event loop lagging (mean scheduling
delay over the window above ``server.admission_max_loop_lag_ms``), or the process using more than
``server.admission_max_cpu_pct`` of a core over the window. Overload then shows as new sessions
refused (503 + Retry-After, or a ``server_busy`` error on an offer), never as live sessions
stuttering: nothing here touches a live session.

``refusal`` is the pure policy (tested without clocks); ``LoadWindow`` turns raw samples into the
window's figures (also clock-free); ``LoadMonitor`` is the one owned task that samples the loop's
scheduling delay and ``time.process_time_ns`` deltas.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from server.metrics import Metrics
from server.settings import ServerSettings


@dataclass(frozen=True)
class Load:
    """What the window saw: mean loop lag (ms) and process CPU (% of one core)."""

    loop_lag_ms: float = 0.0
    cpu_pct: float = 0.0


def refusal(sessions: int, load: Load, limits: ServerSettings) -> str | None:
    """Why a new session is refused now, or None to admit it. A threshold of 0 is off."""
    if sessions >= limits.max_sessions:
        return f"too many live sessions on this server ({sessions}), retry later"
    if 0 < limits.admission_max_loop_lag_ms <= load.loop_lag_ms:
        return f"this server is lagging ({load.loop_lag_ms:.0f} ms), retry later"
    if 0 < limits.admission_max_cpu_pct <= load.cpu_pct:
        return f"this server's CPU is full ({load.cpu_pct:.0f} % of a core), retry later"
    return None


class LoadWindow:
    """Samples (wall ns, loop lag ns, process CPU ns) over the last ``window_ns``."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._samples: deque[tuple[int, int, int]] = deque()

    def add(self, wall_ns: int, lag_ns: int, cpu_ns: int) -> None:
        self._samples.append((wall_ns, max(0, lag_ns), cpu_ns))
        # Keep one sample older than the window: CPU is a delta from it.
        while len(self._samples) > 2 and self._samples[1][0] <= wall_ns - self.window_ns:
            self._samples.popleft()

    def load(self) -> Load:
        if len(self._samples) < 2:
            return Load()
        (wall0, _, cpu0), (wall1, _, cpu1) = self._samples[0], self._samples[-1]
        lags = [lag for _, lag, _ in list(self._samples)[1:]]
        cpu_pct = 100.0 * (cpu1 - cpu0) / (wall1 - wall0) if wall1 > wall0 else 0.0
        return Load(loop_lag_ms=sum(lags) / len(lags) / 1e6, cpu_pct=cpu_pct)


class LoadMonitor:
    """Sleeps ``interval``, measures how late it woke up (the loop's scheduling delay) and the
    process CPU used meanwhile; publishes the window's load to the metrics."""

    def __init__(self, settings: ServerSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.window = LoadWindow(int(settings.load_window_s * 1e9))
        self.load = Load()
        self._sampled: asyncio.Event | None = None

    async def run(self) -> None:
        interval_ns = int(self.settings.load_sample_interval_s * 1e9)
        self.window.add(time.perf_counter_ns(), 0, time.process_time_ns())
        while True:
            before = time.perf_counter_ns()
            await asyncio.sleep(interval_ns / 1e9)
            now = time.perf_counter_ns()
            self.window.add(now, now - before - interval_ns, time.process_time_ns())
            self.load = self.window.load()
            self.metrics.loop_lag.set(self.load.loop_lag_ms / 1e3)
            self.metrics.cpu.set(self.load.cpu_pct / 100.0)
            if self._sampled is not None:
                self._sampled.set()
                self._sampled = None

    async def next_sample(self) -> Load:
        """The load after the next sample (for tests and tools; no polling)."""
        if self._sampled is None:
            self._sampled = asyncio.Event()
        await self._sampled.wait()
        return self.load


class Admission:
    """The process's admission check: live peers from the caller, load from the monitor."""

    def __init__(self, settings: ServerSettings, monitor: LoadMonitor) -> None:
        self.settings = settings
        self.monitor = monitor

    def refusal(self, sessions: int) -> str | None:
        reason = refusal(sessions, self.monitor.load, self.settings)
        if reason is not None:
            self.monitor.metrics.admission_refused.inc()
        return reason
