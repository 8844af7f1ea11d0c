"""Trainee metrics computed from a session's event log (pure functions, no I/O).

Input: the list of event dicts the server stores (see coach/contracts.py: ``vad``, ``transcript``,
``turn``, ``interruption``, ``session_started``, ``session_ended``...). Every timestamp is
``perf_counter_ns``; outputs are seconds relative to the session start (``t0``) so they are
readable and JSON-able. Each figure is one small function so reports and alerts can reuse them.

Scenario access is duck-typed (pydantic ``coach.scenarios.Scenario`` or a plain dict) so this
module does not depend on the scenario loader.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from statistics import mean, median, pstdev
from typing import Any, Iterable

from pydantic import BaseModel, Field

NS = 1_000_000_000
PAUSE_MIN_S = 0.3  # shorter gaps are ordinary breathing between phrases
DEFAULT_DEAD_AIR_S = 5.0  # AlertSettings.dead_air_s default
SIMILARITY_MIN = 0.5  # share of an objection question's / fact's tokens that must appear

# ---- text helpers (shared with alerts.py) --------------------------------------------------

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{_CJK}]")
WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")

EN_FILLERS = ("um", "umm", "uh", "uhh", "er", "erm", "hmm", "like", "you know", "i mean",
              "basically", "actually", "literally", "sort of", "kind of")
ZH_FILLERS = ("嗯", "呃", "额", "那个", "就是说", "就是", "然后", "反正")
EN_WH_WORDS = {"what", "how", "why", "when", "where", "which", "who", "whose", "whom"}
EN_AUX_STARTERS = {"can", "could", "does", "do", "did", "is", "are", "was", "will", "would",
                   "should", "may", "have", "has", "any"}
ZH_QUESTION_MARKERS = ("吗", "呢", "什么", "怎么", "多少", "为什么", "哪", "几", "是不是",
                       "能不能", "有没有", "可不可以", "会不会")


def has_cjk(text: str) -> bool:
    return bool(CJK_RE.search(text))


def count_units(text: str, language: str) -> int:
    """Speech units: English words; for zh, CJK characters plus any latin words (one each)."""
    if language == "zh":
        return len(CJK_RE.findall(text)) + len(WORD_RE.findall(CJK_RE.sub(" ", text)))
    return len(WORD_RE.findall(text))


def is_question(text: str) -> bool:
    """A customer question: ends in ?/？ or carries question words (zh particles, en wh-/aux start)."""
    stripped = text.strip().rstrip("。.!！ ")
    if not stripped:
        return False
    if stripped.endswith(("?", "？")):
        return True
    if any(marker in stripped for marker in ZH_QUESTION_MARKERS):
        return True
    words = [w.lower() for w in WORD_RE.findall(stripped)]
    return bool(words) and (words[0] in EN_AUX_STARTERS or any(w in EN_WH_WORDS for w in words))


@lru_cache(maxsize=512)
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(phrase) + r"(?![A-Za-z0-9])", re.IGNORECASE)


def count_phrase(text: str, phrase: str) -> int:
    """Occurrences of ``phrase``: substring for CJK, whole-word (case-insensitive) for latin."""
    phrase = phrase.strip()
    if not phrase:
        return 0
    if has_cjk(phrase):
        return text.casefold().count(phrase.casefold())
    return len(_phrase_pattern(phrase).findall(text))


def count_fillers(text: str, language: str) -> dict[str, int]:
    if language == "zh":
        return _count_zh_fillers(text)
    counts = {f: count_phrase(text, f) for f in EN_FILLERS}
    return {f: n for f, n in counts.items() if n}


def _count_zh_fillers(text: str) -> dict[str, int]:
    # Longest match first so 就是说 is not also counted as 就是.
    fillers = sorted(ZH_FILLERS, key=len, reverse=True)
    counts: dict[str, int] = {}
    i = 0
    while i < len(text):
        for f in fillers:
            if text.startswith(f, i):
                counts[f] = counts.get(f, 0) + 1
                i += len(f)
                break
        else:
            i += 1
    return counts


def content_tokens(text: str) -> set[str]:
    """Tokens for fuzzy matching: CJK bigrams plus latin words of 3+ letters."""
    tokens = {w.lower() for w in WORD_RE.findall(text) if len(w) >= 3}
    for run in re.findall(f"[{_CJK}]+", text):
        tokens.update(run[i:i + 2] for i in range(max(len(run) - 1, 1)))
    return tokens


def similarity(reference: str, text_tokens: set[str]) -> float:
    """Share of ``reference``'s tokens that appear in ``text_tokens`` (0..1)."""
    ref = content_tokens(reference)
    return len(ref & text_tokens) / len(ref) if ref else 0.0


def scenario_field(scenario: Any, name: str, default: Any = None) -> Any:
    """Read a field from a Scenario model or a plain dict (None-safe)."""
    if scenario is None:
        return default
    value = scenario.get(name, default) if isinstance(scenario, dict) else getattr(scenario, name, default)
    return default if value is None else value


def alert_overrides(scenario: Any) -> dict[str, Any]:
    """The scenario's AlertSettings overrides as a plain dict (dict or pydantic model)."""
    raw = scenario_field(scenario, "alerts", {}) or {}
    if isinstance(raw, BaseModel):
        return raw.model_dump(exclude_unset=True)
    return dict(raw)


# ---- result models --------------------------------------------------------------------------


class Span(BaseModel):
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class GapStats(BaseModel):
    count: int = 0
    total_s: float = 0.0
    mean_s: float | None = None
    longest_s: float | None = None
    spans: list[Span] = Field(default_factory=list)


class QuestionResponse(BaseModel):
    t_s: float  # when the customer finished asking
    text: str
    turn: int | None = None
    response_s: float | None = None  # None = unanswered


class KeywordStats(BaseModel):
    total: int = 0
    hits: dict[str, int] = Field(default_factory=dict)  # used keywords → times said
    first_hit_s: dict[str, float] = Field(default_factory=dict)
    unused: list[str] = Field(default_factory=list)


class ObjectionStats(BaseModel):
    total: int = 0
    raised: list[str] = Field(default_factory=list)  # ids the customer asked
    handled: list[str] = Field(default_factory=list)  # ids whose triggers the trainee said


class FactStats(BaseModel):
    total: int = 0
    mentioned: list[str] = Field(default_factory=list)


class TurnLatency(BaseModel):
    turn: int
    latency_ms: float  # first_reply_frame - user_speech_end
    interrupted: bool = False


class SessionMetrics(BaseModel):
    language: str
    speaker: str  # "trainee" (practice) or "streamer" (shadow)
    duration_s: float
    trainee_talk_s: float
    customer_talk_s: float
    talk_ratio: float | None  # trainee share of all talk time (0..1)
    trainee_units: int  # en words / zh characters
    speech_rate: float | None  # units per minute of trainee speaking time
    speech_rate_unit: str  # "wpm" | "cpm"
    utterance_rates: list[float] = Field(default_factory=list)  # per utterance ≥ 1 s
    pauses: GapStats
    dead_air: GapStats
    dead_air_threshold_s: float
    questions: list[QuestionResponse] = Field(default_factory=list)
    question_count: int = 0
    unanswered_count: int = 0
    response_time_mean_s: float | None = None
    response_time_max_s: float | None = None
    fillers: dict[str, int] = Field(default_factory=dict)
    filler_total: int = 0
    filler_per_min: float | None = None
    filler_per_100_units: float | None = None
    keywords: KeywordStats = Field(default_factory=KeywordStats)
    objections: ObjectionStats = Field(default_factory=ObjectionStats)
    facts: FactStats = Field(default_factory=FactStats)
    interruptions_made: int = 0  # trainee barged in on the customer (confirmed)
    false_interruptions: int = 0  # barge-ins that turned out to be noise/backchannel
    interruptions_suffered: int = 0  # customer started talking over the trainee
    latency: list[TurnLatency] = Field(default_factory=list)
    latency_mean_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_max_ms: float | None = None


# ---- internal structures ---------------------------------------------------------------------


@dataclass(slots=True)
class Utterance:
    speaker: str
    text: str
    start_ns: int
    end_ns: int
    turn: int | None


@dataclass(slots=True)
class Timeline:
    t0: int
    t_end: int

    def s(self, t_ns: int) -> float:
        return round((t_ns - self.t0) / NS, 3)


NsSpan = tuple[int, int]


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


def turn_records(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Last record per turn number (a turn may be re-emitted as it completes)."""
    by_turn: dict[Any, dict[str, Any]] = {}
    for ev in events:
        if ev.get("type") == "turn":
            by_turn[ev.get("turn")] = ev
    return [by_turn[k] for k in sorted(by_turn, key=lambda k: (k is None, k))]


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


# ---- metric computations --------------------------------------------------------------------


def pauses(trainee: list[NsSpan], others: list[NsSpan], min_s: float = PAUSE_MIN_S) -> list[NsSpan]:
    """Gaps ≥ min_s between consecutive trainee spans with nobody else talking in between."""
    gaps, busy = [], SpanSet(others)
    for (_, end), (start, _) in zip(trainee, trainee[1:]):
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


def overlap_s(spans: Iterable[NsSpan], start: int, end: int) -> float:
    """Seconds of ``spans`` inside [start, end] (linear; fine for the alerts' short history)."""
    return sum(max(0, min(b, end) - max(a, start)) for a, b in spans) / NS


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


def interruption_counts(events: list[dict[str, Any]], trainee: list[NsSpan], customer: list[NsSpan]) -> tuple[int, int, int]:
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

    questions = question_responses(cust_utts, trainee, tl)
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
        talk_ratio=round(trainee_talk / (trainee_talk + customer_talk), 3) if trainee_talk + customer_talk else None,
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


def rate_stability(rates: list[float]) -> float | None:
    """Coefficient of variation of per-utterance rates (0 = perfectly steady)."""
    if len(rates) < 2 or mean(rates) == 0:
        return None
    return round(pstdev(rates) / mean(rates), 3)
