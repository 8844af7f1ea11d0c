"""Reading a session's event log: clean events, session info, the timeline, each speaker's
utterances (final transcripts) and speech spans (VAD, else transcripts, else turn playout)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coach.analytics_spans import NsSpan, Timeline, merge_spans


@dataclass(slots=True)
class Utterance:
    speaker: str
    text: str
    start_ns: int
    end_ns: int
    turn: int | None


def clean_events(events: Iterable[Any]) -> list[dict[str, Any]]:
    """Keep dict events with a numeric t_ns (as int); a stored log may hold odd entries."""
    out = []
    for ev in events:
        if not isinstance(ev, dict):
            continue
        t = ev.get("t_ns")
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            continue
        out.append(ev if isinstance(t, int) else {**ev, "t_ns": int(t)})
    return out


def session_info(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The room's ``session_started`` merged with the pipeline's ``session_config`` (kind,
    scenario, language, speaker); the config's non-empty fields win."""
    info: dict[str, Any] = {}
    for wanted in ("session_started", "session_config"):
        ev = next((e for e in events if e.get("type") == wanted), None)
        if ev is not None:
            info.update({k: v for k, v in ev.items() if v is not None and k not in ("type", "t_ns")})
    return info


def coached_speaker(events: list[dict[str, Any]]) -> str:
    """Whom the metrics are about: the pipeline's configured speaker, else by session kind
    (shadow sessions coach the streamer; practice sessions the trainee)."""
    info = session_info(events)
    if info.get("speaker") in ("trainee", "streamer"):
        return str(info["speaker"])
    return "streamer" if info.get("kind") == "shadow" else "trainee"


def timeline(events: list[dict[str, Any]]) -> Timeline:
    stamps = [int(ev["t_ns"]) for ev in events if isinstance(ev.get("t_ns"), int)]
    if not stamps:
        return Timeline(0, 0)
    t0 = next((int(ev["t_ns"]) for ev in events if ev.get("type") == "session_started"), min(stamps))
    t_end = next((int(ev["t_ns"]) for ev in events if ev.get("type") == "session_ended"), max(stamps))
    return Timeline(t0, max(t_end, t0))


def utterances(events: list[dict[str, Any]], speaker: str) -> list[Utterance]:
    """Final transcripts of one speaker, with their speech span (t_ns when spans are missing)."""
    out = []
    for ev in events:
        if ev.get("type") != "transcript" or ev.get("speaker") != speaker or ev.get("final") is False:
            continue
        end = ev.get("end_ns") or ev.get("t_ns") or 0
        start = ev.get("start_ns") or end
        out.append(Utterance(speaker, str(ev.get("text") or ""), int(start), int(end), ev.get("turn")))
    return sorted(out, key=lambda u: u.start_ns)


def vad_spans(events: list[dict[str, Any]], speaker: str, t_end: int) -> list[NsSpan]:
    """Speech spans from vad end edges; a start never closed runs to the session end."""
    spans: list[NsSpan] = []
    open_start: int | None = None
    for ev in events:
        if ev.get("type") != "vad" or ev.get("speaker") != speaker:
            continue
        if ev.get("edge") == "start":
            open_start = int(ev.get("speech_start_ns") or ev["t_ns"])
        elif ev.get("edge") == "end":
            start = ev.get("speech_start_ns") or open_start
            end = int(ev.get("speech_end_ns") or ev["t_ns"])
            if start is not None and end > int(start):
                spans.append((int(start), end))
            open_start = None
    if open_start is not None and t_end > open_start:
        spans.append((open_start, t_end))
    return merge_spans(spans)


def speaker_spans(events: list[dict[str, Any]], speaker: str, t_end: int) -> list[NsSpan]:
    """VAD spans when the speaker has any; otherwise transcript spans (e.g. the AI customer)."""
    spans = vad_spans(events, speaker, t_end)
    if spans:
        return spans
    return merge_spans([(u.start_ns, u.end_ns) for u in utterances(events, speaker) if u.end_ns > u.start_ns])


def customer_spans(events: list[dict[str, Any]]) -> list[NsSpan]:
    spans = [(u.start_ns, u.end_ns) for u in utterances(events, "customer") if u.end_ns > u.start_ns]
    if not spans:  # no transcript spans: fall back to the turn records' playout times
        for ev in turn_records(events):
            start, end = ev.get("first_reply_frame_ns"), ev.get("reply_done_ns")
            if start and end and end > start:
                spans.append((int(start), int(end)))
    return merge_spans(spans)


def turn_records(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Last record per turn number (a turn may be re-emitted as it completes)."""
    by_turn: dict[Any, dict[str, Any]] = {}
    for ev in events:
        if ev.get("type") == "turn":
            by_turn[ev.get("turn")] = ev
    return [by_turn[k] for k in sorted(by_turn, key=lambda k: (k is None, k))]
