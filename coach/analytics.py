"""Trainee metrics computed from a session's event log (pure functions, no I/O).

Input: the list of event dicts the server stores (see coach/contracts.py: ``vad``, ``transcript``,
``turn``, ``interruption``, ``session_started``, ``session_ended``...). Every timestamp is
``perf_counter_ns``; outputs are seconds relative to the session start (``t0``) so they are
readable and JSON-able. Each figure is one small function so reports and alerts can reuse them.

Scenario access is duck-typed (pydantic ``coach.scenarios.Scenario`` or a plain dict) so this
module does not depend on the scenario loader.
"""

from __future__ import annotations

from statistics import mean, median
from typing import Any

# The analytics is split by concern; this module computes a session's metrics and re-exports the
# parts so callers keep one import path.
from coach.analytics_events import (  # noqa: F401
    Utterance,
    clean_events,
    coached_speaker,
    customer_spans,
    session_info,
    speaker_spans,
    timeline,
    turn_records,
    utterances,
    vad_spans,
)
from coach.analytics_keywords import (  # noqa: F401
    SIMILARITY_MIN,
    fact_stats,
    keyword_stats,
    objection_stats,
)
from coach.analytics_models import (  # noqa: F401
    FactStats,
    GapStats,
    KeywordStats,
    ObjectionStats,
    QuestionResponse,
    SessionMetrics,
    Span,
    TurnLatency,
)
from coach.analytics_spans import (  # noqa: F401
    NS,
    PAUSE_MIN_S,
    NsSpan,
    SpanSet,
    Timeline,
    _gap_stats,
    dead_air,
    merge_spans,
    overlap_s,
    pauses,
    total_s,
)
from coach.analytics_speech import (  # noqa: F401
    interruption_counts,
    question_responses,
    rate_stability,
    speech_rate,
    turn_latencies,
    utterance_rates,
)
from coach.analytics_text import (  # noqa: F401
    CJK_RE,
    WORD_RE,
    alert_overrides,
    content_tokens,
    count_fillers,
    count_phrase,
    count_units,
    has_cjk,
    is_question,
    scenario_field,
    similarity,
)

DEFAULT_DEAD_AIR_S = 5.0  # AlertSettings.dead_air_s default


def _stat(values: list[float], fn) -> float | None:
    return round(fn(values), 3) if values else None


def compute_metrics(
    events: list[dict[str, Any]],
    scenario: Any = None,
    language: str | None = None,
    *,
    dead_air_s: float | None = None,
    speaker: str | None = None,
) -> SessionMetrics:
    """All trainee metrics of one session. ``language`` defaults to the session's (then the
    scenario's, then "en"); ``dead_air_s`` to the scenario override, then 5 s."""
    events = clean_events(events)
    info = session_info(events)
    lang = language or info.get("language") or scenario_field(scenario, "language") or "en"
    lang = "zh" if str(lang).startswith("zh") else "en"
    threshold = dead_air_s or alert_overrides(scenario).get("dead_air_s") or DEFAULT_DEAD_AIR_S
    who = speaker or coached_speaker(events)
    tl = timeline(events)

    trainee_utts = utterances(events, who)
    cust_utts = utterances(events, "customer")
    trainee = speaker_spans(events, who, tl.t_end)
    customer = customer_spans(events)
    trainee_talk, customer_talk = total_s(trainee), total_s(customer)
    units = sum(count_units(u.text, lang) for u in trainee_utts)

    fillers: dict[str, int] = {}
    for u in trainee_utts:
        for f, n in count_fillers(u.text, lang).items():
            fillers[f] = fillers.get(f, 0) + n
    filler_total = sum(fillers.values())

    # Customers ask by voice; a shadowed stream's viewers by chat (the script's question list).
    askers = sorted(cust_utts + utterances(events, "viewer"), key=lambda u: u.start_ns)
    questions = question_responses(askers, trainee, tl)
    answered = [q.response_s for q in questions if q.response_s is not None]
    latencies = turn_latencies(events)
    lat_values = [t.latency_ms for t in latencies]
    made, false_n, suffered = interruption_counts(events, trainee, customer)
    product = scenario_field(scenario, "product", {}) or {}

    return SessionMetrics(
        language=lang,
        speaker=who,
        duration_s=round((tl.t_end - tl.t0) / NS, 3),
        trainee_talk_s=round(trainee_talk, 3),
        customer_talk_s=round(customer_talk, 3),
        # A streamer has no one on air to share the time with: no ratio rather than a fake 100 %.
        talk_ratio=(round(trainee_talk / (trainee_talk + customer_talk), 3)
                    if trainee_talk + customer_talk and who != "streamer" else None),
        trainee_units=units,
        speech_rate=speech_rate(units, trainee_talk),
        speech_rate_unit="cpm" if lang == "zh" else "wpm",
        utterance_rates=utterance_rates(trainee_utts, trainee, lang),
        pauses=_gap_stats(pauses(trainee, customer), tl),
        dead_air=_gap_stats(dead_air(trainee + customer, tl, threshold), tl),
        dead_air_threshold_s=threshold,
        questions=questions,
        question_count=len(questions),
        unanswered_count=len(questions) - len(answered),
        response_time_mean_s=_stat(answered, mean),
        response_time_max_s=_stat(answered, max),
        fillers=fillers,
        filler_total=filler_total,
        filler_per_min=round(filler_total / (trainee_talk / 60), 2) if trainee_talk else None,
        filler_per_100_units=round(100 * filler_total / units, 2) if units else None,
        keywords=keyword_stats(list(scenario_field(scenario, "script_keywords", []) or []), trainee_utts, tl),
        objections=objection_stats(list(scenario_field(scenario, "objections", []) or []), cust_utts, trainee_utts),
        facts=fact_stats(list(scenario_field(product, "facts", []) or []), trainee_utts),
        interruptions_made=made,
        false_interruptions=false_n,
        interruptions_suffered=suffered,
        latency=latencies,
        latency_mean_ms=_stat(lat_values, mean),
        latency_p50_ms=_stat(lat_values, median),
        latency_max_ms=_stat(lat_values, max),
    )
