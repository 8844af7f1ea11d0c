"""Smart-turn v3 (real ONNX model from the pipecat-ai wheel) and the segmenter's pause events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coach import smart_turn
from coach.providers.openai_provider import OpenAISTT
from coach.settings import OpenAISettings, VadSettings
from coach.smart_turn import SmartTurn
from coach.speculation import judge
from coach.vad import SileroVad, SpeechEnd, SpeechPause, SpeechResume, SpeechStart, VadSegmenter
from tests.fakes.openai_server import FakeOpenAI
from tests.test_vad import load_16k


def test_model_scores_a_complete_question_complete(fixtures_dir: Path) -> None:
    model = SmartTurn.shared()
    assert model is not None, "pip install --no-deps pipecat-ai==1.14.0 (README)"
    pcm = load_16k(fixtures_dir / "en_pause_complete.wav")
    end = len(pcm) - int(16000 * 1.5)  # speech offset (fixtures have 1.5 s of tail)
    assert model.features(pcm[: end + 3200]).shape == (1, 80, 800)
    assert model.probability(pcm[: end + 3200]) >= 0.5
    # mid-word (speech cut off in the middle of "sensitive"): not a finished turn
    assert model.probability(pcm[: int(16000 * 3.0)]) < model.probability(pcm[: end + 3200])


def test_missing_model_falls_back_with_one_log_line(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(smart_turn, "smart_turn_model_path", lambda: None)
    monkeypatch.setattr(SmartTurn, "_shared", None)
    monkeypatch.setattr(SmartTurn, "_shared_failed", False)
    with caplog.at_level("WARNING", logger="coach.smart_turn"):
        assert SmartTurn.shared() is None
        assert SmartTurn.shared() is None
    assert [r.message for r in caplog.records if "silence only" in r.message] and len(caplog.records) == 1


def test_segmenter_pauses_resumes_and_ends(fixtures_dir: Path) -> None:
    """en_pause_12: 'This cream is made for' <1.2 s> 'people with sensitive skin, is that right?'"""
    pcm = load_16k(fixtures_dir / "en_pause_12.wav")
    pcm = np.concatenate([pcm, np.zeros(16000, dtype=np.int16)])
    seg = VadSegmenter(VadSettings(), vad=SileroVad.shared(), pause_ms=200, silence_ms=1500)
    kinds = []
    for i in range(0, len(pcm) - 319, 320):
        for ev in seg.feed(pcm[i : i + 320], i * 62_500):
            kinds.append(type(ev))
    assert kinds == [SpeechStart, SpeechPause, SpeechResume, SpeechPause, SpeechEnd]


def test_segmenter_cut_starts_a_new_utterance(fixtures_dir: Path) -> None:
    pcm = load_16k(fixtures_dir / "en_pause_12.wav")
    seg = VadSegmenter(VadSettings(), vad=SileroVad.shared(), pause_ms=200, silence_ms=1500)
    kinds, cut = [], None
    for i in range(0, len(pcm) - 319, 320):
        for ev in seg.feed(pcm[i : i + 320], i * 62_500):
            kinds.append(type(ev))
            if isinstance(ev, SpeechPause) and cut is None:
                cut = seg.cut(i * 62_500)
    assert cut is not None and cut.audio.size > 16000
    assert kinds[:3] == [SpeechStart, SpeechPause, SpeechStart]  # not a Resume: a new utterance


class CountingSmartTurn(SmartTurn):
    """The real model, counting its calls (each costs ~25-100 ms of CPU)."""

    calls = 0

    def probability(self, pcm16: np.ndarray) -> float:
        self.calls += 1
        return super().probability(pcm16)


@pytest.mark.parametrize(("said", "grace_s", "model_runs", "has_p"), [
    ("Does this suit sensitive skin?", None, False, False),  # the words decide: no model call
    ("So this cream is great for sensitive skin", None, True, True),  # undecided words: the model decides
    # slow STT: the model was started beside it (it may not have begun) and its answer is unused
    ("Does this suit sensitive skin?", 0.0, None, False),
])
async def test_judge_asks_the_model_only_when_the_words_do_not_decide(
        fixtures_dir: Path, said: str, grace_s: float | None, model_runs: bool | None, has_p: bool) -> None:
    path = smart_turn.smart_turn_model_path()
    assert path is not None, "pip install --no-deps pipecat-ai==1.14.0 (README)"
    model = CountingSmartTurn(path)
    pcm = load_16k(fixtures_dir / "en_question.wav")
    async with FakeOpenAI(stt_text=said) as fake:
        stt = OpenAISTT(OpenAISettings(base_url=fake.base_url, api_key="test"))
        text, p, error = await judge(pcm, stt=stt, smart=model, language="en", sample_rate=16000,
                                     smart_grace_s=grace_s)
    assert (text, error) == (said, None)
    if model_runs is not None:
        assert (model.calls > 0) is model_runs
    assert (p is not None) is has_p
