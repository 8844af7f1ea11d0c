"""Live alerts for the mentor while a trainee/streamer is talking.

The server feeds every session event to ``LiveAlerts.on_event`` and calls ``tick(now_ns)`` about
every 250 ms. ``on_event`` only updates state; ``tick`` decides, so an alert fires at the first
tick where its condition holds (never before) and exactly once per episode: a condition that
stays true stays quiet, and it re-arms only after it has cleared.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coach.analytics import (
    alert_overrides,
    count_phrase,
    count_units,
    is_question,
    overlap_s,
    scenario_field,
)
from coach.settings import AlertSettings

log = logging.getLogger(__name__)

NS = 1_000_000_000
RATE_WINDOW_S = 30.0  # speech rate over the last ~30 s of the speaker's *speaking* time
RATE_MIN_SPEECH_S = 10.0  # judging the rate on less speech than this is noise

SEVERITY = {
    "dead_air": "warning", "speech_rate_high": "info", "speech_rate_low": "info",
    "unanswered_question": "warning", "keyword_unused": "info",
    "stream_fps_low": "warning", "stream_loss_high": "warning",
}
ASKERS = ("customer", "viewer")  # whose questions the coached speaker should answer

# Alerts travel as kind + parameters and each page words them in its own language; these
# templates are only for server-side text (the printable report) and logs.
_TEXT: dict[str, tuple[str, str]] = {
    "dead_air": ("冷场 {silence_s:.0f} 秒（阈值 {threshold_s:.0f} 秒），请继续讲解或提问",
                 "Dead air: {silence_s:.0f} s of silence (limit {threshold_s:.0f} s), keep talking"),
    "speech_rate_high": ("语速过快：{rate:.0f} {unit_zh}（上限 {threshold:.0f}），请放慢",
                         "Speaking too fast: {rate:.0f} {unit} (limit {threshold:.0f}), slow down"),
    "speech_rate_low": ("语速过慢：{rate:.0f} {unit_zh}（下限 {threshold:.0f}），请加快节奏",
                        "Speaking too slowly: {rate:.0f} {unit} (minimum {threshold:.0f}), pick up the pace"),
    "unanswered_question": ("问题 {waited_s:.0f} 秒未回答：{question}",
                            "Question unanswered for {waited_s:.0f} s: {question}"),
    "keyword_unused": ("尚未使用话术关键词：{keyword_list}", "Script keywords not used yet: {keyword_list}"),
    "stream_fps_low": ("画面卡顿：{fps:.0f} 帧/秒（低于 {threshold:.0f}）已 {for_s:.0f} 秒",
                       "Stream stutters: {fps:.0f} fps (below {threshold:.0f}) for {for_s:.0f} s"),
    "stream_loss_high": ("网络丢包 {loss_pct:.1f}%（高于 {threshold:.0f}%）已 {for_s:.0f} 秒",
                         "Packet loss {loss_pct:.1f} % (above {threshold:.0f} %) for {for_s:.0f} s"),
}
_UNIT_ZH = {"wpm": "词/分钟", "cpm": "字/分钟"}


def alert_text(alert: dict[str, Any], language: str) -> str:
    """One alert worded in ``language`` ("zh" or "en"); unknown kinds fall back to the kind."""
    templates = _TEXT.get(str(alert.get("kind")))
    if templates is None:
        return str(alert.get("kind") or "")
    params = {**alert, "unit_zh": _UNIT_ZH.get(str(alert.get("unit")), "")}
    if "keywords" in alert and "keyword_list" not in alert:
        params["keyword_list"] = ("、" if language == "zh" else ", ").join(alert["keywords"])
    try:
        return (templates[0] if language == "zh" else templates[1]).format(**params)
    except (KeyError, ValueError, TypeError):
        return str(alert.get("kind"))


def effective_alert_settings(settings: AlertSettings, scenario: Any) -> AlertSettings:
    """Global settings with the scenario's overrides (per-language dicts merged key by key)."""
    merged = settings.model_dump()
    for key, value in alert_overrides(scenario).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return AlertSettings.model_validate(merged)  # bad overrides → ValidationError naming the field


@dataclass(slots=True)
class _Utterance:
    speech_s: float  # speaking time inside the utterance (VAD), or its span without VAD
    units: int


class LiveAlerts:
    def __init__(
        self,
        settings: AlertSettings,
        scenario: Any,
        emit: Callable[[dict[str, Any]], None],
        speaker: str = "trainee",
        language: str | None = None,
    ) -> None:
        self.settings = effective_alert_settings(settings, scenario)
        self.speaker = speaker
        lang = language or scenario_field(scenario, "language") or "en"
        self.language = "zh" if str(lang).startswith("zh") else "en"
        self._emit = emit
        self._keywords: list[str] = list(scenario_field(scenario, "script_keywords", []) or [])
        self._used: set[str] = set()
        self._start_ns: int | None = None
        self._last_activity_ns: int | None = None
        self._speaker_talking = False
        self._customer_talking = False
        self._utterances: deque[_Utterance] = deque(maxlen=200)  # bounded; 30 s needs far fewer
        self._last_span: tuple[int, int] | None = None
        self._spans: deque[tuple[int, int]] = deque(maxlen=400)  # recent VAD speech spans
        self._rate: float | None = None
        self._question: tuple[int, str] | None = None  # (asked_end_ns, text) awaiting an answer
        self._active: set[str] = set()  # kinds whose episode is ongoing (already alerted)
        self.fired: list[dict[str, Any]] = []

    # ---- state updates ---------------------------------------------------------------------

    def on_event(self, event: dict[str, Any]) -> None:
        """Update state from one session event. Malformed events are logged and ignored."""
        try:
            self._on_event(event)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.warning("alerts: ignoring malformed event %.200r: %s", event, exc)

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind, t_ns = ev.get("type"), ev.get("t_ns")
        if isinstance(t_ns, int) and self._start_ns is None:
            self._start_ns = t_ns
        if kind == "session_started" and t_ns is not None:
            self._start_ns = int(t_ns)
        elif kind == "vad" and ev.get("speaker") != "mentor":  # whisper is not heard on air
            self._on_vad(ev)
        elif kind == "state":
            self._on_state(ev)
        elif kind == "transcript" and ev.get("final", True):
            self._on_transcript(ev)

    def _activity(self, t_ns: int | None) -> None:
        if t_ns is not None:
            self._last_activity_ns = max(self._last_activity_ns or t_ns, int(t_ns))

    def _on_vad(self, ev: dict[str, Any]) -> None:
        mine = ev.get("speaker") == self.speaker
        if ev.get("edge") == "start":
            start = int(ev.get("speech_start_ns") or ev["t_ns"])
            if mine:
                self._speaker_talking = True
                self._answered(start)
            self._activity(start)
        elif ev.get("edge") == "end":
            end = int(ev.get("speech_end_ns") or ev["t_ns"])
            if mine:
                self._speaker_talking = False
                span_start = ev.get("speech_start_ns")
                self._last_span = (int(span_start), end) if span_start else None
                if self._last_span:
                    self._spans.append(self._last_span)
                self._answered(end)
            self._activity(end)

    def _on_state(self, ev: dict[str, Any]) -> None:
        # The AI customer's agent state: "speaking" means its reply is on air.
        talking = ev.get("state") == "speaking"
        if self._customer_talking and not talking:
            self._activity(int(ev["t_ns"]))
        self._customer_talking = talking

    def _on_transcript(self, ev: dict[str, Any]) -> None:
        text = str(ev.get("text") or "")
        end = int(ev.get("end_ns") or ev["t_ns"])
        if ev.get("speaker") in ASKERS:
            if ev.get("speaker") == "customer":  # a viewer's chat question is not on air
                self._activity(end)
            if is_question(text):
                self._question = (end, text)
                self._active.discard("unanswered_question")  # a new question is a new episode
        elif ev.get("speaker") == self.speaker:
            self._answered(end)
            self._activity(end)
            self._used.update(kw for kw in self._keywords if count_phrase(text, kw))
            start = ev.get("start_ns") or (self._last_span[0] if self._last_span else None)
            if start is not None and end > int(start):
                # Pauses inside the utterance must not count as slow speech: use VAD time.
                speech_s = overlap_s(self._spans, int(start), end) or (end - int(start)) / NS
                self._utterances.append(_Utterance(speech_s, count_units(text, self.language)))
                self._rate = self._window_rate()

    def _answered(self, t_ns: int) -> None:
        if self._question is not None and t_ns > self._question[0]:
            self._question = None

    def _window_rate(self) -> float | None:
        """Units per minute over the newest RATE_WINDOW_S of speech (oldest utterance pro rata)."""
        speech_s, units = 0.0, 0.0
        for utt in reversed(self._utterances):
            take = min(utt.speech_s, RATE_WINDOW_S - speech_s)
            speech_s += take
            units += utt.units * take / utt.speech_s
            if speech_s >= RATE_WINDOW_S:
                break
        return units / (speech_s / 60) if speech_s >= RATE_MIN_SPEECH_S else None

    @property
    def speech_rate(self) -> float | None:
        return None if self._rate is None else round(self._rate, 1)

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        """Live figures for a ``metrics`` event to the mentor (cheap; call at any rate)."""
        since = self._last_activity_ns if self._last_activity_ns is not None else (self._start_ns or now_ns)
        silent = not (self._speaker_talking or self._customer_talking)
        return {
            "type": "metrics",
            "t_ns": now_ns,
            "speaker": self.speaker,
            "speech_rate": self.speech_rate,
            "speech_rate_unit": "cpm" if self.language == "zh" else "wpm",
            "silence_s": round((now_ns - since) / NS, 2) if silent else 0.0,
            "keywords_used": [kw for kw in self._keywords if kw in self._used],
            "keywords_unused": [kw for kw in self._keywords if kw not in self._used],
            "question_pending": self._question[1] if self._question else None,
            "alerts_fired": len(self.fired),
            # Thresholds, so the page can show each figure against its limit.
            "speech_rate_min": self.settings.speech_rate_min.get(self.language),
            "speech_rate_max": self.settings.speech_rate_max.get(self.language),
            "dead_air_s": self.settings.dead_air_s,
        }

    # ---- decisions -------------------------------------------------------------------------

    def tick(self, now_ns: int) -> list[dict[str, Any]]:
        """Evaluate every condition at ``now_ns``; returns (and emits) the alerts fired now."""
        if self._start_ns is None:
            self._start_ns = now_ns
        fired: list[dict[str, Any]] = []
        for kind, details in self._conditions(now_ns):
            if details is None:
                self._active.discard(kind)  # condition cleared: re-arm
            elif kind not in self._active:
                self._active.add(kind)
                fired.append(self._alert(kind, now_ns, details))
        for alert in fired:
            self.fired.append(alert)
            self._emit(alert)
        return fired

    def _conditions(self, now_ns: int) -> list[tuple[str, dict[str, Any] | None]]:
        return [
            ("dead_air", self._dead_air(now_ns)),
            ("speech_rate_high", self._rate_beyond(self.settings.speech_rate_max, above=True)),
            ("speech_rate_low", self._rate_beyond(self.settings.speech_rate_min, above=False)),
            ("unanswered_question", self._unanswered(now_ns)),
            ("keyword_unused", self._keyword_unused(now_ns)),
        ]

    def _dead_air(self, now_ns: int) -> dict[str, Any] | None:
        if self._speaker_talking or self._customer_talking:
            return None
        since = self._last_activity_ns if self._last_activity_ns is not None else self._start_ns
        if since is None:  # nothing seen yet: no clock to measure silence against
            return None
        silence_s = (now_ns - since) / NS
        if silence_s < self.settings.dead_air_s:
            return None
        return {"silence_s": round(silence_s, 2), "since_ns": since, "threshold_s": self.settings.dead_air_s}

    def _rate_beyond(self, limits: dict[str, float], above: bool) -> dict[str, Any] | None:
        limit = limits.get(self.language)
        if self._rate is None or limit is None:
            return None
        if (self._rate > limit) if above else (self._rate < limit):
            return {"rate": round(self._rate, 1), "threshold": limit,
                    "unit": "cpm" if self.language == "zh" else "wpm"}
        return None

    def _unanswered(self, now_ns: int) -> dict[str, Any] | None:
        if self._question is None or self._speaker_talking:
            return None
        asked_ns, text = self._question
        waited_s = (now_ns - asked_ns) / NS
        if waited_s < self.settings.unanswered_question_s:
            return None
        return {"question": text, "waited_s": round(waited_s, 2), "asked_ns": asked_ns,
                "threshold_s": self.settings.unanswered_question_s}

    def _keyword_unused(self, now_ns: int) -> dict[str, Any] | None:
        unused = [kw for kw in self._keywords if kw not in self._used]
        elapsed_s = (now_ns - (self._start_ns or now_ns)) / NS
        if not unused or elapsed_s < self.settings.keyword_unused_after_s:
            return None
        return {"keywords": unused, "threshold_s": self.settings.keyword_unused_after_s}

    def _alert(self, kind: str, now_ns: int, details: dict[str, Any]) -> dict[str, Any]:
        # Kind + parameters only: the mentor's page words it in the viewer's language.
        return {"type": "alert", "kind": kind, "severity": SEVERITY[kind], "t_ns": now_ns,
                "speaker": self.speaker, **details}
