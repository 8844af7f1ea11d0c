"""Streamer analysis: long speech is transcribed in pieces cut between words; viewer questions."""

from __future__ import annotations

import numpy as np

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
