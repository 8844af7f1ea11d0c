"""The one definition of a turn's latency stages: names, order, and how each comes from a turn.

A turn record (``TurnRecord.as_dict()``) carries perf_counter_ns timestamps. The stages chain
from the user's speech end to the first reply frame; a missing timestamp folds its stage into
the next one, so the known stages always add up to the total. The REST ``/turns`` answer,
the Prometheus histograms, ``livecoach qa --json`` and the session page all use this module
(the page gets ``definition()`` as JSON and never spells the names itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

START_FIELD = "user_speech_end_ns"
END_FIELD = "first_reply_frame_ns"


@dataclass(frozen=True)
class Stage:
    name: str
    end_field: str  # the stage ends at this timestamp and starts where the previous known one ended
    label_en: str
    label_zh: str


STAGES: tuple[Stage, ...] = (
    Stage("endpointing", "eot_decision_ns", "End of turn", "判断说完"),
    Stage("stt", "stt_final_ns", "Speech-to-text", "语音识别"),
    Stage("llm", "llm_first_token_ns", "LLM first token", "大模型首字"),
    Stage("tts", "tts_first_audio_ns", "TTS first audio", "语音合成首包"),
    Stage("send", END_FIELD, "Send", "发送"),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def _ns(turn: Mapping[str, Any], key: str) -> int | None:
    value = turn.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stage_ns(turn: Mapping[str, Any]) -> dict[str, int | None]:
    """Each stage's duration in ns (None when unknown or negative), in stage order."""
    out: dict[str, int | None] = {}
    start = _ns(turn, START_FIELD)
    for stage in STAGES:
        end = _ns(turn, stage.end_field)
        if start is not None and end is not None and end >= start:
            out[stage.name] = end - start
            start = end
        else:
            out[stage.name] = None
    return out


def total_ns(turn: Mapping[str, Any]) -> int | None:
    start, end = _ns(turn, START_FIELD), _ns(turn, END_FIELD)
    return end - start if start is not None and end is not None and end >= start else None


def _ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


def stage_ms(turn: Mapping[str, Any]) -> dict[str, float | None]:
    """Each stage in ms (µs precision): the numbers every consumer shows."""
    return {name: _ms(ns) for name, ns in stage_ns(turn).items()}


def total_ms(turn: Mapping[str, Any]) -> float | None:
    return _ms(total_ns(turn))


def with_stages(turn: Mapping[str, Any]) -> dict[str, Any]:
    """The turn event plus ``stages_ms`` and ``total_ms`` (what REST ``/turns`` answers)."""
    return {**turn, "stages_ms": stage_ms(turn), "total_ms": total_ms(turn)}


def definition() -> dict[str, Any]:
    """The stage definition as JSON for the page: order, names, labels, fields."""
    return {
        "start_field": START_FIELD,
        "end_field": END_FIELD,
        "stages": [{"name": s.name, "end_field": s.end_field, "label": {"en": s.label_en, "zh": s.label_zh}}
                   for s in STAGES],
    }
