"""Per-speaker figures: speech rate (overall, per utterance, stability), answers to questions,
interruptions and the AI customer's reply latency per turn."""

from __future__ import annotations

from statistics import mean, pstdev
from typing import Any

from coach.analytics_events import Utterance, turn_records
from coach.analytics_models import QuestionResponse, TurnLatency
from coach.analytics_spans import NS, NsSpan, SpanSet, Timeline
from coach.analytics_text import count_units, is_question


def question_responses(
    customer: list[Utterance], trainee: list[NsSpan], tl: Timeline
) -> list[QuestionResponse]:
    """Customer question end → next trainee speech start, before the customer speaks again."""
    out, speech = [], SpanSet(trainee)
    for i, q in enumerate(customer):
        if not is_question(q.text):
            continue
        deadline = customer[i + 1].start_ns if i + 1 < len(customer) else tl.t_end
        span = speech.first_ending_after(q.end_ns)
        reply = span[0] if span is not None and span[0] < deadline else None
        response = None if reply is None else round(max(0, reply - q.end_ns) / NS, 3)
        out.append(QuestionResponse(t_s=tl.s(q.end_ns), text=q.text, turn=q.turn, response_s=response))
    return out


def speech_rate(units: int, talk_s: float) -> float | None:
    return round(units / (talk_s / 60), 1) if talk_s > 0 else None


def utterance_rates(
    trainee: list[Utterance], spans: list[NsSpan], language: str, min_s: float = 1.0
) -> list[float]:
    """Rate of each utterance with at least min_s of speech (for stability scoring). Speaking
    time is the VAD speech inside the utterance, so pauses within it don't lower its rate."""
    rates, speech = [], SpanSet(spans)
    for u in trainee:
        dur = speech.overlap_s(u.start_ns, u.end_ns) or (u.end_ns - u.start_ns) / NS
        if dur >= min_s:
            rates.append(round(count_units(u.text, language) / (dur / 60), 1))
    return rates


def interruption_counts(
    events: list[dict[str, Any]], trainee: list[NsSpan], customer: list[NsSpan]
) -> tuple[int, int, int]:
    """(made, false, suffered). Suffered = a customer span starting inside a trainee span."""
    records = [ev for ev in events if ev.get("type") == "interruption"]
    false_n = sum(1 for ev in records if ev.get("false_interruption"))
    speech = SpanSet(trainee)
    suffered = sum(1 for c, _ in customer if speech.strictly_inside(c))
    return len(records) - false_n, false_n, suffered


def turn_latencies(events: list[dict[str, Any]]) -> list[TurnLatency]:
    out = []
    for ev in turn_records(events):
        end, first = ev.get("user_speech_end_ns"), ev.get("first_reply_frame_ns")
        if end and first:
            out.append(TurnLatency(turn=int(ev.get("turn") or 0), latency_ms=round((first - end) / 1e6, 1),
                                   interrupted=bool(ev.get("interrupted"))))
    return out


def rate_stability(rates: list[float]) -> float | None:
    """Coefficient of variation of per-utterance rates (0 = perfectly steady)."""
    if len(rates) < 2 or mean(rates) == 0:
        return None
    return round(pstdev(rates) / mean(rates), 3)
