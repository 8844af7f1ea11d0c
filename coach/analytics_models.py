"""Result models of the session analytics (JSON-able; seconds relative to the session start)."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
