"""Health of a shadowed stream's video as the server receives it (pure logic, no I/O).

The server feeds two things: every decoded video frame (``on_frame``: when, width, height) and,
about once a second, the receiver's RTP statistics (``on_rtp``: cumulative packets received/lost,
jitter, cumulative bytes). ``sample(now_ns)`` returns the figures over the last window and
``tick(now_ns)`` decides alerts: fps below ``fps_min`` or loss above ``loss_max_pct`` for
``hold_s`` seconds fires once per episode (kind + parameters; the page words it), and the
condition must clear before it can fire again — the same contract as coach/alerts.py.

A freeze follows WebRTC's definition (``freezeCount`` in the W3C stats): a gap between frames
longer than max(3 × the mean frame interval, mean + 150 ms).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NS = 1_000_000_000
VIDEO_CLOCK_HZ = 90_000  # RTP clock of every WebRTC video codec (jitter comes in its ticks)
FREEZE_MIN_EXTRA_S = 0.150


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    fps_min: float = 15.0
    loss_max_pct: float = 3.0
    hold_s: float = 5.0  # a condition must hold this long before it alerts
    window_s: float = 2.0  # fps / bitrate / loss are measured over this trailing window


@dataclass(slots=True)
class _RtpSample:
    t_ns: int
    received: int
    lost: int
    bytes: int | None
    jitter_ms: float | None


@dataclass
class StreamHealth:
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    emit: Callable[[dict[str, Any]], None] | None = None
    _frames: deque[int] = field(default_factory=lambda: deque(maxlen=600))
    _size: tuple[int, int] | None = None
    _last_frame_ns: int | None = None
    _intervals: deque[float] = field(default_factory=lambda: deque(maxlen=30))
    _rtp: deque[_RtpSample] = field(default_factory=lambda: deque(maxlen=64))
    _since: dict[str, int] = field(default_factory=dict)  # condition kind → when it began
    _active: set[str] = field(default_factory=set)
    _start_ns: int | None = None
    freezes: list[dict[str, float]] = field(default_factory=list)  # {"t_ns", "duration_s"}
    fired: list[dict[str, Any]] = field(default_factory=list)

    # ---- inputs --------------------------------------------------------------------------

    def on_frame(self, t_ns: int, width: int, height: int) -> None:
        if self._start_ns is None:
            self._start_ns = t_ns
        if self._last_frame_ns is not None:
            gap_s = (t_ns - self._last_frame_ns) / NS
            if self._intervals:
                mean_s = sum(self._intervals) / len(self._intervals)
                if gap_s > max(3 * mean_s, mean_s + FREEZE_MIN_EXTRA_S):
                    self.freezes.append({"t_ns": self._last_frame_ns, "duration_s": round(gap_s, 3)})
            self._intervals.append(gap_s)
        self._last_frame_ns = t_ns
        self._frames.append(t_ns)
        self._size = (int(width), int(height))

    def on_rtp(self, t_ns: int, packets_received: int, packets_lost: int, bytes_received: int | None = None,
               jitter_ticks: float | None = None) -> None:
        """Cumulative counters from the receiver's ``inbound-rtp`` (+ transport bytes)."""
        if self._start_ns is None:
            self._start_ns = t_ns
        jitter_ms = None if jitter_ticks is None else round(1000 * jitter_ticks / VIDEO_CLOCK_HZ, 1)
        self._rtp.append(_RtpSample(t_ns, int(packets_received), max(0, int(packets_lost)), bytes_received, jitter_ms))

    # ---- figures -------------------------------------------------------------------------

    def _fps(self, now_ns: int) -> float | None:
        if self._start_ns is None:
            return None
        window_ns = int(self.thresholds.window_s * NS)
        span_ns = min(window_ns, now_ns - self._start_ns)
        if span_ns < NS // 2:
            return None  # too early to tell
        count = sum(1 for t in self._frames if now_ns - span_ns < t <= now_ns)
        return round(count / (span_ns / NS), 1)

    def _rtp_window(self, now_ns: int) -> tuple[_RtpSample, _RtpSample] | None:
        if len(self._rtp) < 2:
            return None
        newest = self._rtp[-1]
        cutoff = now_ns - int(self.thresholds.window_s * NS)
        oldest = next((s for s in self._rtp if s.t_ns >= cutoff and s is not newest), self._rtp[-2])
        return oldest, newest

    def sample(self, now_ns: int) -> dict[str, Any]:
        """Current figures (a ``stream_health`` event for the mentor and the report)."""
        loss_pct = bitrate = None
        window = self._rtp_window(now_ns)
        if window is not None:
            a, b = window
            got, lost = b.received - a.received, b.lost - a.lost
            if got + lost > 0:
                loss_pct = round(100 * max(0, lost) / (got + max(0, lost)), 2)
            if a.bytes is not None and b.bytes is not None and b.t_ns > a.t_ns:
                bitrate = round(8 * (b.bytes - a.bytes) / ((b.t_ns - a.t_ns) / NS) / 1000, 1)
        return {
            "type": "stream_health",
            "t_ns": now_ns,
            "fps": self._fps(now_ns),
            "width": self._size[0] if self._size else None,
            "height": self._size[1] if self._size else None,
            "bitrate_kbps": bitrate,
            "loss_pct": loss_pct,
            "jitter_ms": self._rtp[-1].jitter_ms if self._rtp else None,
            "freezes": len(self.freezes),
            "fps_min": self.thresholds.fps_min,
            "loss_max_pct": self.thresholds.loss_max_pct,
        }

    # ---- decisions -----------------------------------------------------------------------

    def tick(self, now_ns: int) -> list[dict[str, Any]]:
        figures = self.sample(now_ns)
        checks = {
            "stream_fps_low": figures["fps"] is not None and figures["fps"] < self.thresholds.fps_min,
            "stream_loss_high": figures["loss_pct"] is not None and figures["loss_pct"] > self.thresholds.loss_max_pct,
        }
        fired = []
        for kind, bad in checks.items():
            if not bad:
                self._since.pop(kind, None)
                self._active.discard(kind)
                continue
            since = self._since.setdefault(kind, now_ns)
            held_s = (now_ns - since) / NS
            if held_s >= self.thresholds.hold_s and kind not in self._active:
                self._active.add(kind)
                fired.append(self._alert(kind, now_ns, held_s, figures))
        for alert in fired:
            self.fired.append(alert)
            if self.emit is not None:
                self.emit(alert)
        return fired

    def _alert(self, kind: str, now_ns: int, held_s: float, figures: dict[str, Any]) -> dict[str, Any]:
        params: dict[str, Any] = {"for_s": round(held_s, 1)}
        if kind == "stream_fps_low":
            params.update(fps=figures["fps"], threshold=self.thresholds.fps_min)
        else:
            params.update(loss_pct=figures["loss_pct"], threshold=self.thresholds.loss_max_pct)
        return {"type": "alert", "kind": kind, "severity": "warning", "t_ns": now_ns, "speaker": "streamer", **params}


def rtp_counters(stats: Any) -> dict[str, Any] | None:
    """Pick the video ``inbound-rtp`` counters and the transport's bytes out of an aiortc
    ``RTCStatsReport`` (or any mapping of stats objects / dicts)."""
    inbound, transport_bytes = None, None
    for item in (stats.values() if hasattr(stats, "values") else stats):
        get = item.get if isinstance(item, dict) else (lambda k, _i=item: getattr(_i, k, None))
        if get("type") == "inbound-rtp" and get("kind") in (None, "video"):
            inbound = {"packets_received": get("packetsReceived") or 0, "packets_lost": get("packetsLost") or 0,
                       "jitter_ticks": get("jitter")}
        elif get("type") == "transport":
            transport_bytes = get("bytesReceived")
    if inbound is None:
        return None
    return {**inbound, "bytes_received": transport_bytes}
