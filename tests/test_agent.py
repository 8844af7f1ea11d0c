"""CustomerAgent end to end: real silero VAD, OpenAI providers against the local FakeOpenAI,
a real PacedAudioTrack drained in real time like a peer would, fixture speech fed in 20 ms
chunks in real time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coach.agent import CustomerAgent
from coach.providers.factory import build_providers
from coach.scenarios import get_scenario
from coach.settings import BargeInSettings, CoachSettings, OpenAISettings, ProviderSettings
from coach.vad import SileroVad
from media.outbound import PacedAudioTrack
from tests.fakes.openai_server import FakeOpenAI
from tests.test_vad import load_16k

ROOT = Path(__file__).resolve().parent.parent
REPLY = "Sure. It is gentle on sensitive skin, and it has no fragrance at all. Would you like a sample?"
FALLBACK = "Sorry, I got distracted for a second. Could you say that again?"


class Sink:
    def __init__(self, track: PacedAudioTrack):
        self.track = track
        self.events: list[dict[str, Any]] = []
        self.queued_at_interrupt: list[float] = []

    def emit(self, event: dict[str, Any]) -> None:
        assert "type" in event and "t_ns" in event
        if event["type"] == "state" and event["state"] == "interrupted":
            self.queued_at_interrupt.append(self.track.queued_ms())
        self.events.append(event)

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]


class Harness:
    def __init__(self, fake: FakeOpenAI, mode: str = "interrupt", timeout_s: float = 3.0, **barge: Any):
        scenario = get_scenario(ROOT / "configs" / "scenarios", "skincare-sensitive-en")
        self.scenario = scenario.model_copy(update={"interruption_mode": mode})
        oa = OpenAISettings(base_url=fake.base_url, api_key="test", timeout_s=timeout_s, max_retries=0)
        self.settings = CoachSettings(
            greet=False,
            providers=ProviderSettings(stt="openai", llm="openai", tts="openai", openai=oa),
            barge_in=BargeInSettings(**barge),
        )
        self.fake = fake

    async def __aenter__(self) -> Harness:
        self.track = PacedAudioTrack(sample_rate=48_000, frame_ms=20)
        self.sink = Sink(self.track)
        self.providers = build_providers(self.settings.providers, self.scenario)
        self.agent = CustomerAgent(
            session_id="t1",
            scenario=self.scenario,
            providers=self.providers,
            output=self.track,
            events=self.sink,
            settings=self.settings,
            vad=SileroVad.shared(),
        )
        self.drain = asyncio.create_task(self._drain())
        await self.agent.start()
        return self

    async def _drain(self) -> None:
        while True:
            await self.track.recv()

    async def __aexit__(self, *exc: object) -> None:
        await self.agent.close()
        await self.providers.aclose()
        self.drain.cancel()
        await asyncio.gather(self.drain, return_exceptions=True)
        self.track.stop()

    async def feed(self, pcm: np.ndarray) -> None:
        """Real time, 20 ms per chunk, t_ns = arrival time (like the inbound pump)."""
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(pcm) - 319, 320)):
            delay = t0 + (k + 1) * 0.02 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.agent.feed(pcm[i : i + 320], time.perf_counter_ns())

    async def feed_silence(self, seconds: float) -> None:
        await self.feed(np.zeros(int(16000 * seconds), dtype=np.int16))

    async def wait_for(self, pred, timeout: float = 10.0) -> None:
        deadline = time.perf_counter() + timeout
        while not pred():
            if time.perf_counter() > deadline:
                raise AssertionError(f"timed out; state={self.agent.state} events={self.sink.events[-5:]}")
            await asyncio.sleep(0.02)
            # keep the VAD fed with silence like a live peer
            self.agent.feed(np.zeros(320, dtype=np.int16), time.perf_counter_ns())


def speech(fixtures_dir: Path, name: str, lead_s: float = 0.4) -> np.ndarray:
    """Fixture at 16 kHz with the 1.0 s lead trimmed to ``lead_s`` (onset kept)."""
    pcm = load_16k(fixtures_dir / name)
    return pcm[int(16000 * (1.0 - lead_s)) :]


async def test_turn_reply_audio_and_ordered_timestamps(fixtures_dir: Path) -> None:
    async with FakeOpenAI(REPLY, first_token_delay_s=0.05, stt_text="Does this suit sensitive skin?") as fake:
        async with Harness(fake) as h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: len(h.agent.turns) == 1, timeout=15)
    t = h.agent.turns[0]
    order = [t.user_speech_start_ns, t.user_speech_end_ns, t.eot_decision_ns, t.stt_final_ns,
             t.llm_first_token_ns, t.tts_first_audio_ns, t.first_reply_frame_ns, t.reply_done_ns]
    assert all(x is not None for x in order), t
    assert order == sorted(order), t
    # STT ran speculatively at the pause: final as soon as the turn was committed
    assert t.stt_final_ns == t.eot_decision_ns and t.stage_ms["stt"] > 0, t
    assert t.speculative_calls == 1 and t.wasted_calls == 0
    assert t.user_text == "Does this suit sensitive skin?"
    assert t.reply_planned_text == REPLY and t.reply_played_text == REPLY and not t.interrupted
    assert t.error is None
    # semantic endpointing: the pause (200 ms) + the speculative transcript ("...?" = complete)
    # end the turn well before the maximum silence (1.5 s)
    assert 150 <= (t.eot_decision_ns - t.user_speech_end_ns) / 1e6 <= 1000
    interim = h.sink.of("interim_transcript")
    assert interim and interim[0]["text"] == "Does this suit sensitive skin?" and not interim[0]["final"]
    # the reply's audio came out: ~60 ms per char of the fake tone, played in real time (never
    # faster; a loaded CI machine's stalled loop may stretch it, which the upper bound allows)
    played_ms = (t.reply_done_ns - t.first_reply_frame_ns) / 1e6
    assert len(REPLY) * 60 * 0.9 <= played_ms <= len(REPLY) * 60 * 1.6
    assert {"stt", "llm", "llm_first_token", "tts"} <= set(t.stage_ms)
    # TTS started on the first clause, before the LLM finished: first request is "Sure."
    speech_reqs = fake.paths("/audio/speech")
    assert speech_reqs[0].body["input"] == "Sure." and len(speech_reqs) == 3
    assert fake.stt_audio_sizes and fake.stt_audio_sizes[0] > 16000 * 2 * 2  # ≥ 2 s of 16 kHz s16
    chat = fake.paths("/chat/completions")[0].body
    assert chat["stream"] is True and chat["messages"][0]["role"] == "system"
    assert chat["messages"][-1] == {"role": "user", "content": "Does this suit sensitive skin?"}
    states = [e["state"] for e in h.sink.of("state")]
    assert states[:5] == ["listening", "user_speaking", "thinking", "speaking", "listening"]
    edges = [e["edge"] for e in h.sink.of("vad")]
    assert edges == ["start", "end"]
    spk = [(e["speaker"], e["text"]) for e in h.sink.of("transcript")]
    assert spk == [("trainee", "Does this suit sensitive skin?"), ("customer", REPLY)]
    assert h.sink.of("turn")[0]["turn"] == 1


async def test_barge_in_flushes_and_truncates(fixtures_dir: Path) -> None:
    async with FakeOpenAI(REPLY, stt_text="Does it have fragrance?") as fake:
        async with Harness(fake) as h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: h.agent.state == "speaking")
            await h.feed_silence(1.2)  # let ~1 s of the reply play
            fake.stt_text = "Wait, sorry, let me stop you there."
            await h.feed(speech(fixtures_dir, "en_interrupt.wav", lead_s=0.2))
            await h.wait_for(lambda: len(h.agent.turns) == 2, timeout=15)
    assert len(h.agent.interruptions) == 1
    rec = h.agent.interruptions[0]
    assert not rec.false_interruption and rec.mode == "interrupt"
    assert rec.flushed_ms > 500  # most of the ~5.6 s reply was still queued
    assert h.sink.queued_at_interrupt and max(h.sink.queued_at_interrupt) <= 40
    assert rec.decision_ns > rec.user_onset_ns
    # decision once speech lasted barge_in.min_speech_ms (160) + VAD chunking, generous bound
    assert (rec.decision_ns - rec.user_onset_ns) / 1e6 < 600
    first, second = h.agent.turns
    assert first.interrupted and second.user_text == "Wait, sorry, let me stop you there."
    assert first.reply_planned_text.startswith(first.reply_played_text)
    assert first.reply_played_text != first.reply_planned_text
    assert first.reply_played_text.startswith("Sure.")
    assert rec.played_text == first.reply_played_text
    customer = [e for e in h.sink.of("transcript") if e["speaker"] == "customer"]
    assert customer[0]["text"] == first.reply_played_text and customer[0]["planned"] == REPLY
    # the next LLM call sees only what was heard
    msgs = fake.paths("/chat/completions")[1].body["messages"]
    assert {"role": "assistant", "content": first.reply_played_text} in msgs
    assert REPLY not in [m["content"] for m in msgs]
    assert "interrupted" in [e["state"] for e in h.sink.of("state")]
    assert len(h.sink.of("interruption")) == 1


async def test_false_interruption_resumes(fixtures_dir: Path) -> None:
    async with FakeOpenAI(REPLY, stt_text="Hello?") as fake:
        async with Harness(fake, false_interruption_timeout_ms=1500) as h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: h.agent.state == "speaking")
            await h.feed_silence(0.6)
            fake.stt_text = ""  # nothing recognisable: a cough, not words
            await h.feed(speech(fixtures_dir, "en_interrupt.wav", lead_s=0.2)[: int(16000 * 1.6)])
            await h.wait_for(lambda: len(h.agent.turns) == 1, timeout=20)
    rec = h.agent.interruptions[0]
    assert rec.false_interruption and rec.resumed
    t = h.agent.turns[0]
    assert not t.interrupted and t.reply_played_text == REPLY


async def test_short_click_does_not_interrupt(fixtures_dir: Path) -> None:
    click = load_16k(fixtures_dir / "en_question.wav")[int(16000 * 1.3) : int(16000 * 1.42)]  # 120 ms
    async with FakeOpenAI(REPLY, stt_text="Is it gentle?") as fake:
        async with Harness(fake) as h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: h.agent.state == "speaking")
            await h.feed_silence(0.5)
            await h.feed(click)
            await h.wait_for(lambda: len(h.agent.turns) == 1, timeout=15)
            await h.feed_silence(0.6)
    # The output may stop at the click's onset (it looks like speech for ~100 ms), but it resumes
    # from the same point and the click is never a turn: at most a false interruption.
    assert all(r.false_interruption and r.resumed for r in h.agent.interruptions)
    assert len(h.agent.turns) == 1 and not h.agent.turns[0].interrupted
    assert h.agent.turns[0].reply_played_text == REPLY
    assert len(fake.paths("/chat/completions")) == 1


@pytest.mark.parametrize("llm_mode", ["error", "hang"])
async def test_llm_failure_speaks_fallback(fixtures_dir: Path, llm_mode: str) -> None:
    async with FakeOpenAI(REPLY, llm_mode=llm_mode, stt_text="How much is it?") as fake:
        async with Harness(fake, timeout_s=1.0) as h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: len(h.agent.turns) == 1, timeout=15)
            assert h.agent.state == "listening"  # session alive, ready for the next turn
    t = h.agent.turns[0]
    assert t.error and t.error.startswith("llm:")
    assert t.reply_played_text == FALLBACK
    assert [r.body["input"] for r in fake.paths("/audio/speech")] == [
        "Sorry, I got distracted for a second.", "Could you say that again?"]
    assert any(e["stage"] == "llm" for e in h.sink.of("error"))


async def test_slow_dripping_llm_is_cut_at_the_reply_deadline(fixtures_dir: Path) -> None:
    """Each chunk arrives within the HTTP read timeout, but the whole reply would take ~7 s."""
    async with FakeOpenAI(REPLY, chunk_delay_s=0.5, chunk_chars=6, stt_text="How much is it?") as fake:
        async with Harness(fake, timeout_s=2.0) as h:
            h.settings.providers.llm_reply_deadline_s = 1.6
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: len(h.agent.turns) == 1, timeout=20)
    t = h.agent.turns[0]
    assert t.error == "llm: reply not finished within 1.6 s"
    # What was complete by then was spoken (a clause or the fallback), never nothing.
    assert t.reply_played_text and len(t.reply_played_text) < len(REPLY)


async def test_ignore_mode_keeps_speaking(fixtures_dir: Path) -> None:
    async with FakeOpenAI(REPLY, stt_text="Tell me more.") as fake:
        async with Harness(fake, mode="ignore") as h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: h.agent.state == "speaking")
            await h.feed_silence(0.5)
            await h.feed(speech(fixtures_dir, "en_interrupt.wav", lead_s=0.2)[: int(16000 * 2.6)])
            assert h.agent.state == "speaking"
            await h.wait_for(lambda: len(h.agent.turns) == 1, timeout=15)
    assert h.agent.interruptions == []
    assert h.agent.turns[0].reply_played_text == REPLY
    assert len(fake.paths("/chat/completions")) == 1


# ---- OpenAI provider against the fake, without the agent -------------------------------

async def test_openai_providers_map_failures_and_keep_odd_bytes() -> None:
    from coach.contracts import ChatMessage, ProviderError
    from coach.providers.openai_provider import OpenAILLM, OpenAISTT, OpenAITTS

    async with FakeOpenAI("One two three four five six.", chunk_chars=4, tts_chunk_bytes=999) as fake:
        oa = OpenAISettings(base_url=fake.base_url, api_key="k", timeout_s=1.0, max_retries=0)
        llm, tts, stt = OpenAILLM(oa), OpenAITTS(oa), OpenAISTT(oa)
        msgs = [ChatMessage("user", "hi")]
        assert "".join([d async for d in llm.stream_reply(msgs, "en")]) == "One two three four five six."
        chunks = [c async for c in tts.synthesize("abcd", "en", "en-us")]
        assert all(len(c) % 2 == 0 for c in chunks)
        assert sum(map(len, chunks)) == len(fake.tone("abcd"))
        assert fake.paths("/audio/speech")[-1].body["voice"] == "alloy"  # espeak voice not passed on
        fake.stt_text = " hello "
        assert await stt.transcribe(np.zeros(16000, dtype=np.int16), 16000, "en") == "hello"
        assert fake.stt_audio_sizes[-1] == 44 + 32000  # WAV header + 1 s of s16
        for mode in ("abort", "error", "hang"):
            fake.llm_mode = mode
            with pytest.raises(ProviderError) as err:
                _ = [d async for d in llm.stream_reply(msgs, "en")]
            assert err.value.stage == "llm"
        fake.tts_mode = fake.stt_mode = "error"
        with pytest.raises(ProviderError, match="tts: HTTP 500"):
            _ = [c async for c in tts.synthesize("x", "en", None)]
        with pytest.raises(ProviderError, match="stt: HTTP 500"):
            await stt.transcribe(np.zeros(160, dtype=np.int16), 16000, "en")


async def test_keywords_mode_interrupts_only_on_keyword(fixtures_dir: Path) -> None:
    async with FakeOpenAI(REPLY, stt_text="Is it gentle?", tts_ms_per_char=120) as fake:  # ~11 s reply
        async with Harness(fake, mode="keywords") as h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: h.agent.state == "speaking")
            fake.stt_text = "I see."  # no keyword: the customer goes on
            await h.feed(speech(fixtures_dir, "en_interrupt.wav", lead_s=0.2)[: int(16000 * 2.8)])
            await h.feed_silence(0.8)  # its utterance ends and is transcribed
            assert h.agent.interruptions == [] and h.agent.state == "speaking"
            fake.stt_text = "Hold on, sorry."
            await h.feed(speech(fixtures_dir, "en_interrupt.wav", lead_s=0.2)[: int(16000 * 2.8)])
            await h.wait_for(lambda: len(h.agent.turns) == 2, timeout=15)
    assert len(h.agent.interruptions) == 1 and h.agent.interruptions[0].mode == "keywords"
    first, second = h.agent.turns
    assert first.interrupted and REPLY.startswith(first.reply_played_text) and first.reply_played_text != REPLY
    assert second.user_text == "Hold on, sorry."


async def test_append_mode_answers_after_the_reply(fixtures_dir: Path) -> None:
    async with FakeOpenAI(REPLY, stt_text="Is it gentle?") as fake:
        async with Harness(fake, mode="append") as h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: h.agent.state == "speaking")
            fake.stt_text = "And the price?"
            await h.feed(speech(fixtures_dir, "en_interrupt.wav", lead_s=0.2)[: int(16000 * 2.8)])
            assert h.agent.state == "speaking"
            await h.wait_for(lambda: len(h.agent.turns) == 2, timeout=20)
    assert h.agent.interruptions == []
    first, second = h.agent.turns
    assert first.reply_played_text == REPLY and second.user_text == "And the price?"
    assert second.first_reply_frame_ns > first.reply_done_ns
