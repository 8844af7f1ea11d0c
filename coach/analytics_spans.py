"""Time spans: merging, O(log n) queries, pauses between one speaker's spans and dead air over the
whole session. Every input is ``perf_counter_ns``; outputs are seconds from the session start."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from statistics import mean

from coach.analytics_models import GapStats, Span

NS = 1_000_000_000
PAUSE_MIN_S = 0.3  # shorter gaps are ordinary breathing between phrases


@dataclass(slots=True)
class Timeline:
    t0: int
    t_end: int

    def s(self, t_ns: int) -> float:
        return round((t_ns - self.t0) / NS, 3)


NsSpan = tuple[int, int]


def merge_spans(spans: Iterable[NsSpan]) -> list[NsSpan]:
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


class SpanSet:
    """Merged, sorted spans with binary-search queries (an hour-long session holds thousands,
    and every question/utterance/pause asks about them: keep it O(log n) per query)."""

    def __init__(self, spans: Iterable[NsSpan]):
        self.spans = merge_spans(spans)
        self.starts = [a for a, _ in self.spans]
        self.ends = [b for _, b in self.spans]  # also sorted: merged spans don't overlap

    def first_ending_after(self, t: int) -> NsSpan | None:
        i = bisect_right(self.ends, t)
        return self.spans[i] if i < len(self.spans) else None

    def overlaps(self, start: int, end: int) -> bool:
        span = self.first_ending_after(start)
        return span is not None and span[0] < end

    def strictly_inside(self, t: int) -> bool:
        i = bisect_right(self.starts, t) - 1
        return i >= 0 and self.starts[i] < t < self.ends[i]

    def overlap_s(self, start: int, end: int) -> float:
        total, i = 0, bisect_right(self.ends, start)
        while i < len(self.spans) and self.starts[i] < end:
            total += min(self.ends[i], end) - max(self.starts[i], start)
            i += 1
        return total / NS


def total_s(spans: list[NsSpan]) -> float:
    return sum(b - a for a, b in spans) / NS


def overlap_s(spans: Iterable[NsSpan], start: int, end: int) -> float:
    """Seconds of ``spans`` inside [start, end] (linear; fine for the alerts' short history)."""
    return sum(max(0, min(b, end) - max(a, start)) for a, b in spans) / NS


def _gap_stats(gaps: list[NsSpan], tl: Timeline) -> GapStats:
    if not gaps:
        return GapStats()
    lengths = [(b - a) / NS for a, b in gaps]
    return GapStats(
        count=len(gaps),
        total_s=round(sum(lengths), 3),
        mean_s=round(mean(lengths), 3),
        longest_s=round(max(lengths), 3),
        spans=[Span(start_s=tl.s(a), end_s=tl.s(b)) for a, b in gaps],
    )


def pauses(trainee: list[NsSpan], others: list[NsSpan], min_s: float = PAUSE_MIN_S) -> list[NsSpan]:
    """Gaps ≥ min_s between consecutive trainee spans with nobody else talking in between."""
    gaps, busy = [], SpanSet(others)
    for (_, end), (start, _) in pairwise(trainee):
        if (start - end) >= min_s * NS and not busy.overlaps(end, start):
            gaps.append((end, start))
    return gaps


def dead_air(all_speech: list[NsSpan], tl: Timeline, threshold_s: float) -> list[NsSpan]:
    """Silences longer than threshold_s over the whole session (start and end included)."""
    gaps, cursor = [], tl.t0
    for start, end in merge_spans(all_speech):
        if start - cursor > threshold_s * NS:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    if tl.t_end - cursor > threshold_s * NS:
        gaps.append((cursor, tl.t_end))
    return gaps
