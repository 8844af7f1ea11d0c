"""Per-session and per-turn QA results, and joining them with the server's turn records.

A ``TurnResult`` is what one client measured for one turn (perf_counter_ns / ms), plus the
matched server record and the stage breakdown; ``as_dict()`` is its JSON form in ``--json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from qa.measure import (
    ClockAlignment,
    match_server_turn,
    ms_between,
    server_overhead_ms,
    server_stage_sum_ms,
    stage_breakdown,
)

WINDOW_KEYS = ("frames", "underruns", "underrun_ms", "holes", "hole_ms")


@dataclass(slots=True)
class TurnResult:
    session: int
    turn: int
    prompt: str
    error: str | None = None
    clock: str | None = None  # "wall" when the page's clock was used (browser QA)
    speech_end_ns: int | None = None  # our speech offset left the mic track
    heard_ns: int | None = None  # first reply audio received
    reply_end_ns: int | None = None
    latency_ms: float | None = None  # speech end → reply heard
    early_reply: bool = False
    # reply audio quality inside the reply windows
    frames: int | None = None
    underruns: int | None = None
    underrun_ms: float | None = None
    holes: int | None = None
    hole_ms: float | None = None
    # barge-in
    bargein_onset_ns: int | None = None
    bargein_stop_ns: int | None = None
    bargein_speech_end_ns: int | None = None
    bargein_ms: float | None = None  # our talk-over onset → the reply went quiet
    bargein_reply_ms: float | None = None
    bargein_error: str | None = None
    bargein_server: dict[str, Any] | None = None
    # joined with the server's record after the run
    server: dict[str, Any] | None = None
    stages_ms: dict[str, float | None] | None = None
    server_sum_ms: float | None = None
    server_overhead_ms: float | None = None

    def add_window(self, stats: dict[str, float | int]) -> None:
        for key in WINDOW_KEYS:
            current = getattr(self, key) or 0
            setattr(self, key, round(current + stats.get(key, 0), 1))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class SessionResult:
    session: int
    room: str
    user: str
    session_id: str | None = None
    connect_ms: float | None = None  # join sent → peer connected
    first_audio_ms: float | None = None  # join sent → first received audio frame
    send_lag_max_ms: float | None = None  # worst lateness of our mic track (client overloaded?)
    join_ms: float | None = None
    greeting: bool = False
    packets_lost: int | None = None
    error: str | None = None
    turns: list[TurnResult] = field(default_factory=list)
    token: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"session": self.session, "room": self.room, "user": self.user, "session_id": self.session_id,
                "connect_ms": self.connect_ms, "first_audio_ms": self.first_audio_ms,
                "send_lag_max_ms": self.send_lag_max_ms, "join_ms": self.join_ms, "greeting": self.greeting,
                "packets_lost": self.packets_lost, "error": self.error, "turns": len(self.turns)}


def join_server_turns(results: list[SessionResult], server_events: dict[int, list[dict[str, Any]]],
                      clock: ClockAlignment) -> None:
    """Attach each turn's server record and stage breakdown (coach/turn_stages.py)."""
    for res in results:
        events = server_events.get(res.session, [])
        turns = [e for e in events if e.get("type", "turn") == "turn"]
        interruptions = [e for e in events if e.get("type") == "interruption"]
        used: set[int] = set()
        for rec in res.turns:
            if rec.bargein_onset_ns is not None:
                rec.bargein_server = match_interruption(rec.bargein_onset_ns, interruptions, clock)
            srv = None
            if rec.speech_end_ns is not None:
                # Wide window: under load the server's view of the speech end lags by seconds.
                srv = match_server_turn(rec.speech_end_ns, turns, used, clock.offset_ns, window_ns=8_000_000_000)
            rec.server = srv
            if srv is None or rec.error or rec.speech_end_ns is None:
                rec.stages_ms = rec.server_sum_ms = rec.server_overhead_ms = None
                continue
            rec.stages_ms = stage_breakdown(rec.speech_end_ns, rec.heard_ns, srv, clock.offset_ns)
            rec.server_sum_ms = server_stage_sum_ms(srv)
            rec.server_overhead_ms = server_overhead_ms(srv)


def match_interruption(onset_ns: int, interruptions: list[dict[str, Any]],
                       clock: ClockAlignment) -> dict[str, Any] | None:
    """Server view of one barge-in: when it decided to stop, when its last reply frame left."""
    best = None
    for e in interruptions:
        if e.get("user_onset_ns") is None:
            continue
        d = abs(int(e["user_onset_ns"]) - clock.offset_ns - onset_ns)
        if d < 2_000_000_000 and (best is None or d < best[0]):
            best = (d, e)
    if best is None:
        return None
    e = best[1]
    shift = clock.offset_ns
    return {
        "server_onset_ms": ms_between(int(e["user_onset_ns"]) - shift, onset_ns),
        "decision_ms": ms_between(int(e["decision_ns"]) - shift, onset_ns) if e.get("decision_ns") else None,
        "last_reply_frame_ms": (ms_between(int(e["last_reply_frame_ns"]) - shift, onset_ns)
                                if e.get("last_reply_frame_ns") else None),
        "flushed_ms": e.get("flushed_ms"),
        "false_interruption": e.get("false_interruption"),
    }
