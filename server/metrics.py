"""Prometheus metrics, one CollectorRegistry per app (never the global one: tests build many apps)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from coach.turn_stages import stage_ns, total_ns

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
_TIP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_FLUSH_BUCKETS = (0, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rooms = Gauge("livecoach_rooms", "Rooms owned by this process", registry=r)
        self.peers = Gauge("livecoach_peers", "Live RTCPeerConnections on this process", registry=r)
        self.sessions = Gauge("livecoach_sessions", "Active practice/shadow sessions", registry=r)
        self.connections = Gauge("livecoach_ws_connections", "Open WebSocket connections", registry=r)
        self.signalling_errors = Counter(
            "livecoach_signalling_errors", "Error replies sent on /ws", ["reason"], registry=r
        )
        self.loop_lag = Gauge("livecoach_loop_lag_seconds",
                              "Mean event-loop scheduling delay over the load window", registry=r)
        self.cpu = Gauge("livecoach_process_cpu_ratio",
                         "Process CPU over the load window (1.0 = one core)", registry=r)
        self.admission_refused = Counter(
            "livecoach_admission_refused", "New sessions refused: session cap, loop lag or CPU", registry=r)
        self.tips = Counter("livecoach_tips", "Mentor tips delivered to a streamer", registry=r)
        self.turn_latency = Histogram(
            "livecoach_turn_latency_seconds",
            "User speech end to first reply frame",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.turn_stage = Histogram(
            "livecoach_turn_stage_seconds", "Per-stage turn latency", ["stage"], buckets=_STAGE_BUCKETS, registry=r
        )
        self.bargein_flushed = Histogram(
            "livecoach_bargein_flushed_ms", "Reply audio dropped at barge-in", buckets=_FLUSH_BUCKETS, registry=r
        )
        self.speculative_stt = Counter(
            "livecoach_speculative_stt_calls", "STT calls started at a pause, by outcome (used|wasted)",
            ["outcome"], registry=r
        )
        self.speculative_llm = Counter(
            "livecoach_speculative_llm_calls", "LLM requests started at a pause, by outcome (used|wasted)",
            ["outcome"], registry=r
        )
        self.false_interruptions = Counter(
            "livecoach_false_interruptions", "Barge-ins that were a cough/click/filler (reply resumed)", registry=r
        )
        self.tip_delivery = Histogram(
            "livecoach_tip_delivery_seconds", "Tip send to streamer receipt", buckets=_TIP_BUCKETS, registry=r
        )

    def observe_event(self, event: dict[str, Any]) -> None:
        """Feed a SessionEvents event; unknown kinds are ignored. Never raises."""
        try:
            kind = event.get("type")
            if kind == "turn":
                self._observe_turn(event)
            elif kind == "interruption":
                flushed = event.get("flushed_ms")
                if isinstance(flushed, (int, float)) and flushed >= 0:
                    self.bargein_flushed.observe(float(flushed))
                if event.get("false_interruption") is True:
                    self.false_interruptions.inc()
        except Exception:  # noqa: BLE001 - metrics must never break the session
            pass

    def _observe_turn(self, event: dict[str, Any]) -> None:
        calls, wasted = event.get("speculative_calls"), event.get("wasted_calls")
        if isinstance(calls, int) and isinstance(wasted, int) and 0 <= wasted <= calls:
            self.speculative_stt.labels(outcome="wasted").inc(wasted)
            self.speculative_stt.labels(outcome="used").inc(calls - wasted)
        calls, wasted = event.get("speculative_llm_calls"), event.get("wasted_llm_calls")
        if isinstance(calls, int) and isinstance(wasted, int) and 0 <= wasted <= calls:
            self.speculative_llm.labels(outcome="wasted").inc(wasted)
            self.speculative_llm.labels(outcome="used").inc(calls - wasted)
        total = total_ns(event)
        if total is not None:
            self.turn_latency.observe(total / 1e9)
        for stage, ns in stage_ns(event).items():  # coach/turn_stages.py: the one definition
            if ns is not None:
                self.turn_stage.labels(stage=stage).observe(ns / 1e9)

    def render(self) -> bytes:
        return generate_latest(self.registry)
