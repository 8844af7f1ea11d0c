"""Live alerts: fire at the right tick (not before), once per episode, re-arm after clearing."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from coach.alerts import LiveAlerts, alert_text, effective_alert_settings
from coach.settings import AlertSettings
from tests.test_analytics import T0, ns

TICK = 0.25


class Session:
    """A LiveAlerts fed by hand, collecting what it emits."""

    def __init__(self, scenario: Any = None, language: str | None = "en", **settings: Any):
        self.emitted: list[dict[str, Any]] = []
        self.alerts = LiveAlerts(AlertSettings(**settings), scenario, self.emitted.append, language=language)
        self.alerts.on_event({"type": "session_started", "t_ns": T0, "kind": "practice"})

    def ev(self, type_: str, at: float, **fields: Any) -> None:
        self.alerts.on_event({"type": type_, "t_ns": ns(at), **fields})

    def speech(self, start: float, end: float | None = None) -> None:
        self.ev("vad", start + 0.1, speaker="trainee", edge="start", speech_start_ns=ns(start), speech_end_ns=None)
        if end is not None:
            self.ev("vad", end + 0.48, speaker="trainee", edge="end", speech_start_ns=ns(start), speech_end_ns=ns(end))

    def said(self, start: float, end: float, words: int, text: str | None = None) -> None:
        self.ev("transcript", end + 0.5, speaker="trainee", final=True, start_ns=ns(start), end_ns=ns(end),
                text=text if text is not None else " ".join(["word"] * words))

    def run(self, start: float, end: float) -> list[tuple[str, float]]:
        """Tick every 250 ms over [start, end]; returns (kind, tick time) of what fired."""
        fired = []
        steps = round((end - start) / TICK)
        for i in range(steps + 1):
            t = start + i * TICK
            fired += [(a["kind"], round((a["t_ns"] - T0) / 1e9, 3)) for a in self.alerts.tick(ns(t))]
        return fired

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [a for a in self.emitted if a["kind"] == kind]


def test_dead_air_fires_at_threshold_once_and_rearms() -> None:
    s = Session(dead_air_s=5.0)
    s.speech(1.0, 3.0)
    assert s.run(0.0, 7.75) == []  # silence since 3.0 s is only 4.75 s
    assert s.run(8.0, 9.5) == [("dead_air", 8.0)]  # exactly 5 s after the speech ended; once
    alert = s.emitted[-1]
    assert alert["type"] == "alert" and alert["severity"] == "warning" and alert["t_ns"] == ns(8.0)
    assert alert["silence_s"] == pytest.approx(5.0) and alert["since_ns"] == ns(3.0)
    assert "message" not in alert and alert["threshold_s"] == 5.0  # kind + parameters; pages word it
    assert "冷场 5 秒" in alert_text(alert, "zh") and "Dead air: 5 s" in alert_text(alert, "en")
    assert s.run(9.75, 12.0) == []  # still the same episode: no spam
    s.speech(12.5, 14.0)  # someone talks: the condition clears and re-arms
    assert s.run(12.75, 18.75) == []
    assert s.run(19.0, 25.0) == [("dead_air", 19.0)]


def test_customer_speaking_is_not_dead_air() -> None:
    s = Session(dead_air_s=5.0)
    s.speech(0.0, 1.0)
    s.ev("state", 2.0, state="speaking")  # the AI customer's reply is on air
    assert s.run(2.0, 20.0) == []
    s.ev("state", 20.0, state="listening")
    assert s.run(20.25, 24.75) == []
    assert s.run(25.0, 26.0) == [("dead_air", 25.0)]


def test_dead_air_counts_from_session_start() -> None:
    s = Session(dead_air_s=3.0)
    assert s.run(0.0, 4.0) == [("dead_air", 3.0)]


def test_speech_rate_sliding_window() -> None:
    s = Session(speech_rate_min={"en": 110}, speech_rate_max={"en": 190}, dead_air_s=1000.0)
    s.said(0, 5, 20)  # 240 wpm but only 5 s of speech: too little to judge
    assert s.run(6.0, 6.0) == [] and s.alerts.speech_rate is None
    s.said(6, 11, 20)  # 10 s of speech at 240 wpm
    assert s.alerts.speech_rate == pytest.approx(240.0)
    assert s.run(12.0, 12.5) == [("speech_rate_high", 12.0)]
    high = s.kinds("speech_rate_high")[0]
    assert high["rate"] == pytest.approx(240.0) and high["threshold"] == 190 and high["unit"] == "wpm"
    s.said(12, 17, 20)
    s.said(18, 23, 20)  # 20 s at 240: same episode
    assert s.run(24.0, 24.0) == []
    for k in range(3):  # 15 s at 144 wpm: window = 15 s @144 + 15 s @240 → 192 wpm, still high
        s.said(25 + 6 * k, 30 + 6 * k, 12)
    assert s.alerts.speech_rate == pytest.approx(192.0)
    assert s.run(43.0, 43.0) == []
    s.said(43, 48, 12)  # 20 s @144 + 10 s @240 → 176 wpm: back in range, re-armed
    assert s.alerts.speech_rate == pytest.approx(176.0)
    assert s.run(49.0, 49.0) == []
    for k in range(6):  # a full window of slow speech: 6 words / 5 s = 72 wpm
        s.said(50 + 6 * k, 55 + 6 * k, 6)
    assert s.alerts.speech_rate == pytest.approx(72.0)
    assert s.run(90.0, 91.0) == [("speech_rate_low", 90.0)]
    for k in range(6):
        s.said(92 + 6 * k, 97 + 6 * k, 20)
    assert s.run(130.0, 131.0) == [("speech_rate_high", 130.0)]  # second episode
    assert len(s.kinds("speech_rate_high")) == 2 and len(s.kinds("speech_rate_low")) == 1


def test_chinese_rate_thresholds_and_scenario_override() -> None:
    zh = Session(scenario={"language": "zh"}, language=None, dead_air_s=1000.0)
    zh.said(0, 10, 0, text="这" * 60)  # 360 characters per minute > 330
    assert zh.run(11.0, 11.0) == [("speech_rate_high", 11.0)]
    assert zh.kinds("speech_rate_high")[0]["unit"] == "cpm"
    # The scenario raises the English limit; its zh limit stays the global one.
    scenario = {"language": "en", "alerts": {"speech_rate_max": {"en": 250}}}
    en = Session(scenario=scenario, dead_air_s=1000.0)
    assert en.alerts.settings.speech_rate_max == {"en": 250, "zh": 330.0}
    en.said(0, 10, 40)  # 240 wpm
    assert en.run(11.0, 12.0) == []


def test_unanswered_question() -> None:
    s = Session(unanswered_question_s=8.0, dead_air_s=100.0)
    s.ev("transcript", 5.02, speaker="customer", final=True, text="How much is it today?", turn=1,
         start_ns=ns(3.0), end_ns=ns(5.0))
    assert s.run(5.0, 12.75) == []
    assert s.run(13.0, 14.0) == [("unanswered_question", 13.0)]
    alert = s.kinds("unanswered_question")[0]
    assert alert["question"] == "How much is it today?" and alert["waited_s"] == pytest.approx(8.0)
    assert "How much is it today?" in alert_text(alert, "en") and "未回答" in alert_text(alert, "zh")
    s.speech(15.0, 17.0)  # answered: clears
    assert s.run(15.25, 30.0) == []
    s.ev("transcript", 20.02, speaker="customer", final=True, text="这个有没有赠品", turn=2, end_ns=ns(20.0))
    assert s.run(20.25, 28.5) == [("unanswered_question", 28.0)]  # a new question, a new episode
    s.ev("transcript", 40.02, speaker="customer", final=True, text="Okay, thanks.", end_ns=ns(40.0))
    assert s.run(40.25, 60.0) == []  # not a question


def test_answer_in_time_prevents_alert() -> None:
    s = Session(unanswered_question_s=8.0, dead_air_s=100.0)
    s.ev("transcript", 2.02, speaker="customer", final=True, text="Does it have fragrance?", end_ns=ns(2.0))
    s.speech(4.0)  # trainee starts answering (still talking)
    assert s.run(2.0, 20.0) == []


def test_keyword_unused_once_after_deadline() -> None:
    scenario = {"language": "en", "script_keywords": ["patch test", "coupon", "7-day returns"]}
    s = Session(scenario=scenario, keyword_unused_after_s=120.0, dead_air_s=1000.0)
    s.said(10, 14, 0, text="Do a patch test first, and returns are easy.")
    assert s.run(100.0, 119.75) == []
    assert s.run(120.0, 125.0) == [("keyword_unused", 120.0)]
    alert = s.kinds("keyword_unused")[0]
    assert alert["keywords"] == ["coupon", "7-day returns"] and alert["severity"] == "info"
    assert "coupon, 7-day returns" in alert_text(alert, "en") and "话术" in alert_text(alert, "zh")
    s.said(130, 134, 0, text="Use the coupon and you get 7-day returns.")
    assert s.run(135.0, 200.0) == []


def test_all_keywords_used_no_alert() -> None:
    s = Session(scenario={"script_keywords": ["coupon"]}, keyword_unused_after_s=10.0, dead_air_s=1000.0)
    s.said(1, 3, 0, text="Grab the COUPON now")
    assert s.run(0.0, 30.0) == []


def test_malformed_events_are_ignored_and_bad_overrides_rejected() -> None:
    s = Session(dead_air_s=5.0)
    s.alerts.on_event({"type": "vad", "edge": "end", "speaker": "trainee"})  # no times
    s.alerts.on_event({"type": "transcript", "speaker": "customer", "text": "why?"})
    s.alerts.on_event("not a dict")  # type: ignore[arg-type]
    s.alerts.on_event({"type": "alert", "kind": "dead_air", "t_ns": ns(1)})  # our own output echoed back
    assert s.run(0.0, 5.0) == [("dead_air", 5.0)]
    with pytest.raises(ValidationError, match="dead_air_s"):
        effective_alert_settings(AlertSettings(), {"alerts": {"dead_air_s": -1}})


def test_rate_uses_vad_speech_inside_the_utterance() -> None:
    """A 14 s turn with 4 s of pauses in it: the rate is over the 10 s actually spoken."""
    s = Session(dead_air_s=1000.0)
    s.speech(0.0, 6.0)
    s.speech(8.0, 10.0)
    s.speech(12.0, 14.0)
    s.said(0.0, 14.0, 40)  # 40 words in 10 s of speech = 240 wpm (171 over the whole span)
    assert s.alerts.speech_rate == pytest.approx(240.0)
    assert s.run(15.0, 15.0) == [("speech_rate_high", 15.0)]


def test_snapshot_for_live_metrics() -> None:
    s = Session(scenario={"script_keywords": ["coupon", "patch test"]}, dead_air_s=1000.0)
    s.speech(0.0, 6.0)
    s.speech(7.0, 11.0)
    s.said(0.0, 11.0, 0, text=" ".join(["coupon"] * 25))  # 25 words in 10 s
    s.ev("transcript", 12.0, speaker="customer", final=True, text="Is it safe?", end_ns=ns(12.0))
    snap = s.alerts.snapshot(ns(14.0))
    assert snap["type"] == "metrics" and snap["speech_rate"] == pytest.approx(150.0)
    assert snap["silence_s"] == pytest.approx(2.0) and snap["question_pending"] == "Is it safe?"
    assert snap["keywords_used"] == ["coupon"] and snap["keywords_unused"] == ["patch test"]


def test_real_scenario_overrides_and_zh_keywords() -> None:
    from coach.scenarios import load_scenarios
    from tests.test_analytics import ROOT

    scenario = load_scenarios(ROOT / "configs" / "scenarios")["price-haggler-zh"]
    emitted: list[dict[str, Any]] = []
    alerts = LiveAlerts(AlertSettings(), scenario, emitted.append, speaker="streamer")
    assert alerts.language == "zh" and alerts.settings.unanswered_question_s == 6
    assert alerts.settings.dead_air_s == 5.0 and alerts.settings.speech_rate_max["en"] == 190.0
    alerts.on_event({"type": "session_started", "t_ns": T0, "kind": "shadow"})
    alerts.on_event({"type": "transcript", "speaker": "streamer", "final": True, "text": "领了优惠券，到手价更低",
                     "start_ns": ns(1.0), "end_ns": ns(3.0), "t_ns": ns(3.5)})
    assert alerts.tick(ns(7.9)) == []
    assert [a["kind"] for a in alerts.tick(ns(8.0))] == ["dead_air"]
    fired = alerts.tick(ns(120.0))
    assert [a["kind"] for a in fired] == ["keyword_unused"]
    assert "优惠券" not in fired[0]["keywords"] and "到手价" not in fired[0]["keywords"]
    assert "直播间专属价" in fired[0]["keywords"] and "、" in alert_text(fired[0], "zh")


def test_viewer_question_from_the_script_list_needs_an_answer() -> None:
    """Shadowed streams have no customer: a viewer's (chat) question counts, but it is not airtime."""
    s = Session(unanswered_question_s=6.0, dead_air_s=100.0)
    s.ev("transcript", 2.0, speaker="viewer", final=True, text="Is there a discount today?", end_ns=ns(2.0))
    assert s.run(2.0, 8.0) == [("unanswered_question", 8.0)]
    assert alert_text(s.kinds("unanswered_question")[0], "en").startswith("Question unanswered for 6 s")


def test_snapshot_carries_thresholds() -> None:
    emitted: list[dict[str, Any]] = []
    alerts = LiveAlerts(AlertSettings(), None, emitted.append, speaker="streamer", language="zh")
    snap = alerts.snapshot(ns(1.0))
    assert snap["speech_rate_unit"] == "cpm"
    assert (snap["speech_rate_min"], snap["speech_rate_max"], snap["dead_air_s"]) == (180.0, 330.0, 5.0)
