"""The LLM asked at a pause the words did not end (coach/llm_prefetch.py), through the real openai
client against the local fake provider, and inside a real CustomerAgent (real silero VAD)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from coach.contracts import ChatMessage, ProviderError
from coach.llm_prefetch import LlmPrefetch, ReplyLLM
from coach.providers.openai_provider import OpenAILLM
from coach.settings import OpenAISettings
from tests.fakes.openai_server import FakeOpenAI
from tests.test_agent import REPLY, Harness, speech

ASKED = [ChatMessage("system", "You are a shopper."), ChatMessage("user", "So this cream is made for")]


def _spawn(tasks: list[asyncio.Task]):
    def spawn(coro, name: str) -> asyncio.Task:
        tasks.append(asyncio.get_running_loop().create_task(coro, name=name))
        return tasks[-1]
    return spawn


def _chats(fake: FakeOpenAI) -> list:
    return [r for r in fake.requests if r.path.endswith("/chat/completions")]


async def _read(stream) -> str:
    return "".join([delta async for delta in stream])


async def test_same_conversation_replays_the_early_request() -> None:
    tasks: list[asyncio.Task] = []
    async with FakeOpenAI(REPLY, first_token_delay_s=0.05) as fake:
        llm = OpenAILLM(OpenAISettings(base_url=fake.base_url, api_key="test", max_retries=0))
        prefetch = LlmPrefetch(llm, ASKED, "en", _spawn(tasks))
        text = await _read(ReplyLLM(llm, prefetch).stream_reply(list(ASKED), "en"))
        assert text == REPLY and prefetch.taken
        assert len(_chats(fake)) == 1  # no second request: the reply took the early one


async def test_changed_words_cancel_the_early_request_and_ask_again() -> None:
    tasks: list[asyncio.Task] = []
    async with FakeOpenAI(REPLY, first_token_delay_s=0.5) as fake:
        llm = OpenAILLM(OpenAISettings(base_url=fake.base_url, api_key="test", max_retries=0))
        prefetch = LlmPrefetch(llm, ASKED, "en", _spawn(tasks))
        said_more = [*ASKED[:1], ChatMessage("user", "So this cream is made for people with sensitive skin?")]
        text = await _read(ReplyLLM(llm, prefetch).stream_reply(said_more, "en"))
        assert text == REPLY and not prefetch.taken
        await asyncio.gather(*tasks, return_exceptions=True)
        assert prefetch.task.cancelled()
        assert [r.body["messages"][-1]["content"] for r in _chats(fake)][-1] == said_more[-1].content


async def test_a_failed_early_request_fails_the_reply_like_a_live_one() -> None:
    tasks: list[asyncio.Task] = []
    async with FakeOpenAI(REPLY, llm_mode="error") as fake:
        llm = OpenAILLM(OpenAISettings(base_url=fake.base_url, api_key="test", max_retries=0))
        prefetch = LlmPrefetch(llm, ASKED, "en", _spawn(tasks))
        with pytest.raises(ProviderError):
            await _read(ReplyLLM(llm, prefetch).stream_reply(list(ASKED), "en"))


def _undecided(h: Harness) -> Harness:
    """Smart-turn never sure enough: a pause whose words do not decide waits for the maximum silence."""
    h.settings.turn_taking.threshold = {"en": 1.0}
    return h


async def test_agent_asks_at_an_undecided_pause_and_the_silent_end_uses_that_answer(fixtures_dir: Path) -> None:
    """Words that do not decide ("...sensitive skin" with no punctuation) and a model that is not
    sure: the LLM is asked at the pause; the turn ends by the maximum silence and the reply is
    that early answer (no chat request after the end-of-turn decision)."""
    async with FakeOpenAI(REPLY, stt_text="So this cream is great for sensitive skin") as fake:
        async with _undecided(Harness(fake)) as h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: len(h.agent.turns) == 1, timeout=15)
    t = h.agent.turns[0]
    chats = _chats(fake)
    # Every request was made at a pause, none after the decision: the reply took the last one
    # (a pause inside the question, when the VAD saw one, asked too and was wasted).
    assert chats and t.eot_decision_ns is not None, chats
    assert all(c.t_ns < t.eot_decision_ns for c in chats), chats
    assert (t.speculative_llm_calls, t.wasted_llm_calls) == (len(chats), len(chats) - 1)
    assert t.reply_planned_text == REPLY
    assert h.agent.stats["speculative_llm_calls"] - h.agent.stats["wasted_llm_calls"] == 1


@pytest.mark.parametrize("said", ["So this cream is made for", "So this cream is great for sensitive skin"])
async def test_agent_asks_only_after_the_decision_when_words_dangle_or_prefetch_is_off(
        fixtures_dir: Path, said: str) -> None:
    """Dangling words ("made for"): the trainee nearly always goes on, so no early call; and with
    speculative_llm off, never one."""
    async with FakeOpenAI(REPLY, stt_text=said) as fake:
        h = _undecided(Harness(fake))
        h.settings.turn_taking.speculative_llm = said.endswith("for")  # on for the dangling case
        async with h:
            await h.feed(speech(fixtures_dir, "en_question.wav"))
            await h.wait_for(lambda: len(h.agent.turns) == 1, timeout=15)
    t = h.agent.turns[0]
    chats = _chats(fake)
    assert len(chats) == 1 and t.eot_decision_ns is not None and chats[0].t_ns > t.eot_decision_ns
    assert (t.speculative_llm_calls, t.wasted_llm_calls) == (0, 0)
