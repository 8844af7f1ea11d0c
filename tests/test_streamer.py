"""Streamer analysis: long speech is transcribed in pieces cut between words; viewer questions."""

from __future__ import annotations

import numpy as np

from coach.stream_health import NS
from coach.streamer import ViewerQuestion, split_for_stt, viewer_questions

RATE = 16_000


def test_long_speech_is_cut_in_quiet_places_and_nothing_is_lost() -> None:
    rng = np.random.default_rng(1)
    audio = (rng.standard_normal(RATE * 20) * 3000).astype(np.int16)  # 20 s of "speech"
    for gap_s in (6.8, 13.5):  # two short silences between words
        audio[int(gap_s * RATE): int((gap_s + 0.1) * RATE)] = 0
    pieces = split_for_stt(audio, RATE, max_s=8.0, search_s=2.0)
    assert np.array_equal(np.concatenate(pieces), audio)
    assert all(len(p) <= 8 * RATE for p in pieces)
    cuts = np.cumsum([len(p) for p in pieces])[:-1] / RATE
    assert abs(cuts[0] - 6.85) < 0.05 and abs(cuts[1] - 13.55) < 0.05, cuts


def test_short_speech_is_one_piece() -> None:
    audio = np.ones(RATE * 3, dtype=np.int16)
    assert len(split_for_stt(audio, RATE)) == 1


def test_viewer_questions_from_the_script() -> None:
    scenario = {"viewer_questions": [{"text": "Does it ship today?", "at_s": 40}, {"text": "Price?", "at_s": 10},
                                     {"text": ""}]}
    assert viewer_questions(scenario) == [ViewerQuestion("Price?", 10.0), ViewerQuestion("Does it ship today?", 40.0)]
    assert viewer_questions(None) == []


def test_due_viewer_questions_are_asked_and_alert_when_unanswered() -> None:
    """Clock-free: the analysis' tick releases the script's questions and the live alerts judge
    the streamer's answer; snapshots (metrics + stream health) come once a second."""
    from coach.settings import AlertSettings, VadSettings
    from coach.streamer import StreamerAnalysis

    events: list[dict] = []
    analysis = StreamerAnalysis(
        emit=events.append, scenario={"viewer_questions": [{"text": "Is there a discount today?", "at_s": 1.0}]},
        language="en", alert_settings=AlertSettings(unanswered_question_s=4.0, dead_air_s=100.0),
        vad_settings=VadSettings(), stt=None, name="t")
    t0 = 10**12
    analysis.start(t0)
    for quarter in range(1, 25):  # 6 s of 250 ms ticks
        analysis.tick(t0 + quarter * NS // 4)
    asked = [e for e in events if e["type"] == "transcript"]
    assert [(e["speaker"], e["text"], e["start_ns"]) for e in asked] == [("viewer", "Is there a discount today?", t0 + NS)]
    alerts = [e for e in events if e["type"] == "alert"]
    assert [(a["kind"], a["t_ns"]) for a in alerts] == [("unanswered_question", t0 + 5 * NS)]
    assert sum(1 for e in events if e["type"] == "metrics") == 6
    assert sum(1 for e in events if e["type"] == "stream_health") == 6


def test_scenario_viewer_questions_are_validated() -> None:
    import pytest

    from coach.scenarios import Scenario, get_scenario
    from tests.test_scenarios import SCENARIOS

    shipped = get_scenario(SCENARIOS, "skincare-sensitive-en").model_dump()
    assert shipped["viewer_questions"] == []
    with pytest.raises(ValueError):
        Scenario.model_validate({**shipped, "viewer_questions": [{"text": "Price?", "at_s": -1}]})
    sc = Scenario.model_validate({**shipped, "viewer_questions": [{"text": "Price?", "at_s": 3}]})
    assert viewer_questions(sc) == [ViewerQuestion("Price?", 3.0)]
