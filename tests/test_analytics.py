"""Trainee metrics on constructed event logs with known spans (exact figures)."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coach.analytics import (
    compute_metrics,
    count_fillers,
    count_phrase,
    count_units,
    is_question,
)
from coach.scenarios import load_scenarios

S = 1_000_000_000
T0 = 50 * S  # an arbitrary perf_counter_ns origin
ROOT = Path(__file__).resolve().parent.parent


def ns(t_s: float) -> int:
    return T0 + round(t_s * S)


class Log:
    """Builds an event log the way the server stores it (times in seconds from session start)."""

    def __init__(self, language: str = "en", kind: str = "practice", wall_s: float = 1_714_521_600.0):
        self.speaker = "streamer" if kind == "shadow" else "trainee"
        self.events: list[dict[str, Any]] = [{
            "type": "session_started", "session_id": "s1", "user": "ann", "room": "r1", "kind": kind,
            "scenario": "test", "language": language, "t_ns": T0, "wall_s": wall_s,
        }]

    def speech(self, start: float, end: float) -> "Log":
        """One VAD segment of the coached speaker (start edge after 96 ms, end after 480 ms)."""
        self.events.append({"type": "vad", "speaker": self.speaker, "edge": "start", "t_ns": ns(start + 0.096),
                            "speech_start_ns": ns(start), "speech_end_ns": None})
        self.events.append({"type": "vad", "speaker": self.speaker, "edge": "end", "t_ns": ns(end + 0.48),
                            "speech_start_ns": ns(start), "speech_end_ns": ns(end)})
        return self

    def said(self, start: float, end: float, text: str, turn: int | None = None) -> "Log":
        """The coached speaker's final transcript for a turn spanning [start, end]."""
        self.events.append({"type": "transcript", "speaker": self.speaker, "text": text, "final": True,
                            "turn": turn, "start_ns": ns(start), "end_ns": ns(end), "t_ns": ns(end + 0.9)})
        return self

    def customer(self, start: float, end: float, text: str, turn: int = 0, interrupted: bool = False) -> "Log":
        self.events.append({"type": "transcript", "speaker": "customer", "text": text, "planned": text,
                            "final": True, "turn": turn, "interrupted": interrupted,
                            "start_ns": ns(start), "end_ns": ns(end), "t_ns": ns(end + 0.02)})
        return self

    def turn(self, n: int, user_end: float, first_frame: float, interrupted: bool = False) -> "Log":
        self.events.append({"type": "turn", "session_id": "s1", "turn": n, "user_speech_end_ns": ns(user_end),
                            "first_reply_frame_ns": ns(first_frame), "interrupted": interrupted,
                            "t_ns": ns(first_frame + 2)})
        return self

    def interruption(self, turn: int, onset: float, false: bool = False) -> "Log":
        self.events.append({"type": "interruption", "session_id": "s1", "turn": turn,
                            "user_onset_ns": ns(onset), "decision_ns": ns(onset + 0.2),
                            "last_reply_frame_ns": ns(onset + 0.2), "flushed_ms": 900.0,
                            "planned_text": "x", "played_text": "x", "mode": "interrupt",
                            "false_interruption": false, "resumed": false, "t_ns": ns(onset + 0.2)})
        return self

    def add(self, type_: str, at: float, **fields: Any) -> "Log":
        self.events.append({"type": type_, "t_ns": ns(at), **fields})
        return self

    def end(self, at: float) -> list[dict[str, Any]]:
        self.events.append({"type": "session_ended", "t_ns": ns(at), "wall_s": 1_714_521_600.0 + at})
        return sorted(self.events, key=lambda e: e["t_ns"])  # the store's append order


SCENARIO: dict[str, Any] = {
    "id": "cream-en", "language": "en", "title": {"en": "Face cream", "zh": "面霜"},
    "script_keywords": ["fragrance-free", "patch test", "7-day returns"],
    "product": {"name": "Calm Cream", "facts": ["Fragrance-free and alcohol-free formula",
                                                "Ceramides repair the skin barrier"]},
    "objections": [
        {"id": "sensitive", "question": "Does this cream suit sensitive skin?", "triggers": ["patch test"]},
        {"id": "price", "question": "Why is it so expensive compared to other creams?", "triggers": ["coupon"]},
    ],
    "alerts": {"dead_air_s": 4.0},
}

TEXT1 = "Yes um it is fragrance-free, and you know, you can do a patch test first."  # 16 words, 2 fillers
TEXT2 = "It is twenty dollars today with a coupon."  # 8 words


def good_session() -> list[dict[str, Any]]:
    """Trainee spans 3.0-5.0, 5.5-8.0, 8.2-9.0, 10.5-12.0, 16.2-18.0 (8.6 s);
    customer 0.5-2.5, 12.9-15.0, 18.8-20.0 (5.3 s); silence 20.0-27.0."""
    log = Log()
    log.customer(0.5, 2.5, "Hi, does this cream suit sensitive skin?", turn=0)
    for a, b in [(3.0, 5.0), (5.5, 8.0), (8.2, 9.0), (10.5, 12.0)]:
        log.speech(a, b)
    log.said(3.0, 12.0, TEXT1, turn=1).turn(1, 12.0, 12.9)
    log.customer(12.9, 15.0, "How much is it today?", turn=1)
    log.speech(16.2, 18.0).said(16.2, 18.0, TEXT2, turn=2).turn(2, 18.0, 18.8)
    log.customer(18.8, 20.0, "Okay, I will think about it.", turn=2)
    log.interruption(2, 19.5).interruption(2, 19.7, false=True)
    return log.end(27.0)


def test_text_helpers() -> None:
    assert is_question("How much is it today") and is_question("Is it good?") and is_question("这款面霜适合敏感肌吗")
    assert not is_question("I like it.") and not is_question("好的，我再看看。") and not is_question("")
    assert count_units("这款面霜 SPF 50 适合", "zh") == 8  # 6 characters + 2 latin tokens
    assert count_units("It's fragrance-free, 50 ml.", "en") == 5
    assert count_fillers("Um, you know, I like it, like, uh", "en") == {"um": 1, "you know": 1, "like": 2, "uh": 1}
    assert count_fillers("嗯，就是说那个然后就是", "zh") == {"嗯": 1, "就是说": 1, "那个": 1, "然后": 1, "就是": 1}
    assert count_phrase("A PATCH TEST first, patch-test", "patch test") == 1
    assert count_phrase("可以先做皮肤测试", "皮肤测试") == 1


def test_exact_figures_on_known_spans() -> None:
    m = compute_metrics(good_session(), SCENARIO)
    assert m.language == "en" and m.speaker == "trainee"
    assert m.duration_s == 27.0
    assert m.trainee_talk_s == pytest.approx(8.6)
    assert m.customer_talk_s == pytest.approx(5.3)
    assert m.talk_ratio == pytest.approx(0.619)  # 8.6 / 13.9
    assert m.trainee_units == 24
    assert m.speech_rate == pytest.approx(167.4)  # 24 words / (8.6 s / 60)
    assert m.speech_rate_unit == "wpm"
    # 5.0→5.5 and 9.0→10.5 are pauses; 8.0→8.2 is too short; 12.0→16.2 has the customer in it.
    assert m.pauses.count == 2
    assert m.pauses.mean_s == pytest.approx(1.0)
    assert m.pauses.longest_s == pytest.approx(1.5)
    assert [(p.start_s, p.end_s) for p in m.pauses.spans] == [(5.0, 5.5), (9.0, 10.5)]
    # Scenario override: dead air > 4 s. Only 20.0 → 27.0 qualifies.
    assert m.dead_air_threshold_s == 4.0
    assert m.dead_air.count == 1 and m.dead_air.total_s == pytest.approx(7.0)
    assert (m.dead_air.spans[0].start_s, m.dead_air.spans[0].end_s) == (20.0, 27.0)
    # Questions: greeting question → 0.5 s, price question → 1.2 s; the last line is no question.
    assert [q.response_s for q in m.questions] == [0.5, 1.2]
    assert m.question_count == 2 and m.unanswered_count == 0
    assert m.response_time_mean_s == pytest.approx(0.85) and m.response_time_max_s == pytest.approx(1.2)
    assert m.fillers == {"um": 1, "you know": 1} and m.filler_total == 2
    assert m.filler_per_100_units == pytest.approx(8.33)
    assert m.keywords.hits == {"fragrance-free": 1, "patch test": 1}
    assert m.keywords.unused == ["7-day returns"]
    assert m.keywords.first_hit_s == {"fragrance-free": 3.0, "patch test": 3.0}
    assert m.objections.raised == ["sensitive"]  # the price question was worded differently
    assert m.objections.handled == ["sensitive", "price"]  # "patch test" after it, "coupon" anywhere
    assert m.facts.total == 2 and m.facts.mentioned == ["Fragrance-free and alcohol-free formula"]
    assert (m.interruptions_made, m.false_interruptions, m.interruptions_suffered) == (1, 1, 0)
    assert [(t.turn, t.latency_ms) for t in m.latency] == [(1, 900.0), (2, 800.0)]
    assert m.latency_mean_ms == pytest.approx(850.0) and m.latency_max_ms == pytest.approx(900.0)
    m.model_dump_json()  # JSON-able


def test_dead_air_threshold_and_without_scenario() -> None:
    events = good_session()
    m = compute_metrics(events)  # default 5 s
    assert m.dead_air_threshold_s == 5.0 and m.dead_air.count == 1
    assert compute_metrics(events, dead_air_s=8.0).dead_air.count == 0
    fine = compute_metrics(events, dead_air_s=0.45).dead_air  # every silence > 0.45 s
    assert [(g.start_s, g.end_s) for g in fine.spans] == [
        (0.0, 0.5), (2.5, 3.0), (5.0, 5.5), (9.0, 10.5), (12.0, 12.9), (15.0, 16.2), (18.0, 18.8), (20.0, 27.0)]
    assert fine.total_s == pytest.approx(12.9)
    assert m.keywords.total == 0 and m.objections.total == 0 and m.facts.total == 0


def test_unanswered_question_and_suffered_interruption() -> None:
    log = Log()
    log.speech(1.0, 4.0).said(1.0, 4.0, "Welcome to the stream")
    log.customer(3.5, 5.0, "What about returns?", turn=1)  # starts while the trainee talks
    log.customer(9.0, 10.0, "Hello? Are you there?", turn=2)
    log.speech(10.4, 11.0).said(10.4, 11.0, "Sorry yes")
    m = compute_metrics(log.end(12.0))
    assert m.interruptions_suffered == 1
    assert [q.response_s for q in m.questions] == [None, 0.4]
    assert m.unanswered_count == 1 and m.response_time_mean_s == pytest.approx(0.4)


def test_open_vad_segment_runs_to_session_end() -> None:
    log = Log()
    log.add("vad", 2.1, speaker="trainee", edge="start", speech_start_ns=ns(2.0), speech_end_ns=None)
    m = compute_metrics(log.end(6.0))
    assert m.trainee_talk_s == pytest.approx(4.0) and m.talk_ratio == 1.0


def test_transcript_spans_used_when_no_vad() -> None:
    log = Log()
    log.said(1.0, 3.0, "hello there friends")
    m = compute_metrics(log.end(4.0))
    assert m.trainee_talk_s == pytest.approx(2.0) and m.speech_rate == pytest.approx(90.0)


def test_chinese_rates_fillers_keywords() -> None:
    log = Log(language="zh")
    log.customer(0.0, 1.5, "这款面霜适合敏感肌吗", turn=0)
    text = "嗯，这款面霜是无香精的，然后可以先做皮肤测试。"  # 20 characters
    log.speech(2.0, 8.0).said(2.0, 8.0, text, turn=1)
    scenario = {"language": "zh", "script_keywords": ["无香精", "皮肤测试", "七天无理由"]}
    m = compute_metrics(log.end(9.0), scenario)
    assert m.language == "zh" and m.speech_rate_unit == "cpm"
    assert m.trainee_units == 20 and m.speech_rate == pytest.approx(200.0)
    assert m.fillers == {"嗯": 1, "然后": 1}
    assert m.keywords.hits == {"无香精": 1, "皮肤测试": 1} and m.keywords.unused == ["七天无理由"]
    assert [q.response_s for q in m.questions] == [0.5]
    assert m.utterance_rates == [200.0]


def test_shadow_session_coaches_the_streamer() -> None:
    log = Log(kind="shadow")
    log.speech(0.0, 10.0).said(0.0, 10.0, "word " * 30)
    log.speech(17.0, 20.0).said(17.0, 20.0, "word " * 6)
    m = compute_metrics(log.end(20.0))
    assert m.speaker == "streamer" and m.customer_talk_s == 0 and m.talk_ratio is None  # nobody to share with
    assert m.speech_rate == pytest.approx(166.2)  # 36 words / 13 s
    assert m.dead_air.count == 1 and m.pauses.count == 1 and m.pauses.longest_s == pytest.approx(7.0)


def test_real_scenario_file() -> None:
    scenario = load_scenarios(ROOT / "configs" / "scenarios")["skincare-sensitive-en"]
    log = Log()
    log.customer(0.0, 3.0, scenario.objections[1].question, turn=0)
    log.speech(3.5, 7.0).said(3.5, 7.0, "It is completely fragrance-free and great for sensitive skin.")
    m = compute_metrics(log.end(8.0), scenario)
    assert m.objections.raised == ["fragrance"] and "fragrance" in m.objections.handled
    assert set(m.keywords.hits) == {"fragrance-free", "sensitive skin"}
    assert m.keywords.total == len(scenario.script_keywords)


def test_empty_and_malformed_logs() -> None:
    m = compute_metrics([])
    assert m.duration_s == 0 and m.speech_rate is None and m.talk_ratio is None
    m = compute_metrics([{"type": "transcript", "speaker": "trainee", "text": "hi", "t_ns": 5}])
    assert m.trainee_units == 1


def _read_16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 48_000 and w.getnchannels() == 1
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    # 48 kHz → 16 kHz: average each 3 samples (a crude low-pass is enough for VAD).
    n = pcm.size // 3 * 3
    return pcm[:n].reshape(-1, 3).astype(np.int32).mean(axis=1).astype(np.int16)


def test_vad_segmenter_feeds_talk_time(fixtures_dir: Path) -> None:
    """Real silero VAD over a fixture → vad events → talk time ≈ speech span (1.0 s → dur−1.5 s)."""
    from coach.settings import VadSettings
    from coach.vad import SpeechEnd, SpeechStart, VadSegmenter

    pcm = _read_16k(fixtures_dir / "en_question.wav")
    duration_s = pcm.size / 16_000
    seg = VadSegmenter(VadSettings(), 16_000)
    log = Log()
    block = 320  # 20 ms frames, timestamped by their last sample as the inbound track does
    for i in range(0, pcm.size, block):
        chunk = pcm[i:i + block]
        t = ns((i + chunk.size) / 16_000)
        for ev in seg.feed(chunk, t):
            if isinstance(ev, SpeechStart):
                log.events.append({"type": "vad", "speaker": "trainee", "edge": "start", "t_ns": t,
                                   "speech_start_ns": ev.onset_ns, "speech_end_ns": None})
            elif isinstance(ev, SpeechEnd):
                log.events.append({"type": "vad", "speaker": "trainee", "edge": "end", "t_ns": t,
                                   "speech_start_ns": ev.onset_ns, "speech_end_ns": ev.end_ns})
    m = compute_metrics(log.end(duration_s))
    # qa/fixtures.py trims espeak-ng's own silence, so the audible end is at duration − 1.5 s
    # (within an energy frame); measure it from the signal energy.
    onset_s, offset_s = _energy_span(pcm)
    assert onset_s == pytest.approx(1.0, abs=0.05)
    assert offset_s == pytest.approx(duration_s - 1.5, abs=0.05)
    ends = [e for e in log.events if e["type"] == "vad" and e["edge"] == "end"]
    assert len(ends) >= 1
    assert (min(e["speech_start_ns"] for e in ends) - T0) / S == pytest.approx(onset_s, abs=0.15)
    assert (max(e["speech_end_ns"] for e in ends) - T0) / S == pytest.approx(offset_s, abs=0.15)
    assert m.trainee_talk_s == pytest.approx(offset_s - onset_s, abs=0.3)
    assert m.talk_ratio == 1.0 and m.dead_air.count == 0  # 1.0 s before, ≤ 1.8 s after


def _energy_span(pcm: np.ndarray, rms_min: float = 100.0) -> tuple[float, float]:
    """First and last 10 ms frame whose RMS exceeds rms_min (int16 units), in seconds."""
    frames = pcm[: pcm.size // 160 * 160].astype(np.float64).reshape(-1, 160)
    active = np.flatnonzero(np.sqrt((frames ** 2).mean(axis=1)) > rms_min)
    return active[0] * 0.01, (active[-1] + 1) * 0.01


def test_utterance_rate_excludes_pauses() -> None:
    log = Log()
    log.speech(0.0, 4.0).speech(6.0, 8.0).said(0.0, 8.0, " ".join(["w"] * 24))
    m = compute_metrics(log.end(9.0))
    assert m.utterance_rates == [240.0] and m.speech_rate == pytest.approx(240.0)


def test_odd_entries_in_a_stored_log_are_skipped() -> None:
    events = good_session()
    events.insert(3, "garbage")  # type: ignore[arg-type]
    events.insert(4, {"type": "vad", "speaker": "trainee", "edge": "end"})  # no t_ns
    events.insert(5, {"type": "tip", "text": "x", "t_ns": "soon"})
    events = [dict(e, t_ns=float(e["t_ns"])) if isinstance(e, dict) and e.get("type") == "turn" else e for e in events]
    m = compute_metrics(events, SCENARIO)
    assert m.trainee_talk_s == pytest.approx(8.6) and [t.latency_ms for t in m.latency] == [900.0, 800.0]


def test_pipeline_session_config_names_speaker_and_language() -> None:
    """The server's pipeline logs session_config (no session_started in its own event list)."""
    log = Log()
    log.events[0] = {"type": "session_config", "kind": "shadow", "scenario": "x", "language": "zh",
                     "speaker": "streamer", "user": "li", "wall_s": 1_714_521_600.0, "t_ns": T0}
    log.speaker = "streamer"
    log.speech(1.0, 4.0).said(1.0, 4.0, "大家好欢迎来到直播间")
    m = compute_metrics(log.end(5.0))
    assert m.speaker == "streamer" and m.language == "zh" and m.trainee_units == 10
    assert m.trainee_talk_s == pytest.approx(3.0) and m.speech_rate == pytest.approx(200.0)
