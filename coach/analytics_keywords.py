"""Script keywords, objections and product facts: what the coached speaker said of the script."""

from __future__ import annotations

from typing import Any

from coach.analytics_events import Utterance
from coach.analytics_models import FactStats, KeywordStats, ObjectionStats
from coach.analytics_spans import Timeline
from coach.analytics_text import (
    content_tokens,
    count_phrase,
    scenario_field,
    similarity,
)

SIMILARITY_MIN = 0.5  # share of an objection question's / fact's tokens that must appear


def keyword_stats(keywords: list[str], trainee: list[Utterance], tl: Timeline) -> KeywordStats:
    stats = KeywordStats(total=len(keywords))
    for kw in keywords:
        for u in trainee:
            n = count_phrase(u.text, kw)
            if n:
                stats.hits[kw] = stats.hits.get(kw, 0) + n
                stats.first_hit_s.setdefault(kw, tl.s(u.start_ns))
    stats.unused = [kw for kw in keywords if kw not in stats.hits]
    return stats


def objection_stats(objections: list[Any], customer: list[Utterance], trainee: list[Utterance]) -> ObjectionStats:
    """Raised: the customer said (most of) the question. Handled: the trainee said a trigger
    after it was raised (anywhere in the session when we never saw it raised)."""
    stats = ObjectionStats(total=len(objections))
    for obj in objections:
        oid = str(scenario_field(obj, "id", ""))
        question = str(scenario_field(obj, "question", ""))
        raised_at = next(
            (u.end_ns for u in customer if similarity(question, content_tokens(u.text)) >= SIMILARITY_MIN), None
        )
        if raised_at is not None:
            stats.raised.append(oid)
        after = [u for u in trainee if raised_at is None or u.end_ns > raised_at]
        triggers = scenario_field(obj, "triggers", []) or []
        if any(count_phrase(u.text, t) for u in after for t in triggers):
            stats.handled.append(oid)
    return stats


def fact_stats(facts: list[Any], trainee: list[Utterance]) -> FactStats:
    said = set().union(*(content_tokens(u.text) for u in trainee)) if trainee else set()
    mentioned = [str(f) for f in facts if similarity(str(f), said) >= SIMILARITY_MIN]
    return FactStats(total=len(facts), mentioned=mentioned)
