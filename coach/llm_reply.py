"""The text of the customer's reply: the LLM stream split into speakable clauses, or the fallback line."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from coach.contracts import ChatMessage, ProviderError
from coach.reply import Reply
from coach.text import ClauseSplitter, split_all

_now = time.perf_counter_ns


def write_line(reply: Reply, line: str, language: str) -> None:
    """The whole reply is a known line (the greeting, the fallback)."""
    for c in split_all(line, language):
        reply.add_clause(c)
    reply.close_text()


def write_fallback(reply: Reply, lines: dict[str, str], language: str) -> None:
    """The whole reply is the configured fallback line (when STT or the LLM failed)."""
    write_line(reply, lines.get(language) or next(iter(lines.values()), "Sorry?"), language)


async def stream_llm_reply(reply: Reply, messages: list[ChatMessage], *, llm: Any, language: str,
                           deadline_s: float, fallback_lines: dict[str, str],
                           emit: Callable[..., None]) -> None:
    """Stream the LLM's answer into ``reply`` clause by clause, timing the turn's LLM stages.

    A provider error (or the deadline) keeps the clauses already written; with none, the reply
    becomes the fallback line.
    """
    turn = reply.turn
    assert turn is not None
    splitter = ClauseSplitter(language)
    t0 = _now()

    def add(clause: str) -> None:
        if not reply.clauses:
            turn.stage_ms["llm"] = (_now() - t0) / 1e6  # to the first speakable clause
        reply.add_clause(clause)

    try:
        try:
            async with asyncio.timeout(deadline_s):
                async for delta in llm.stream_reply(messages, language):
                    if not delta:
                        continue
                    if turn.llm_first_token_ns is None:
                        turn.llm_first_token_ns = _now()
                        turn.stage_ms["llm_first_token"] = (turn.llm_first_token_ns - t0) / 1e6
                    for c in splitter.push(delta):
                        add(c)
        except TimeoutError:
            raise ProviderError("llm", f"reply not finished within {deadline_s:g} s") from None
        for c in splitter.flush():
            add(c)
        turn.stage_ms["llm_total"] = (_now() - t0) / 1e6
    except ProviderError as exc:
        turn.error = str(exc)
        emit("error", reason=str(exc), stage=exc.stage, turn=turn.turn)
        if not reply.clauses:
            write_fallback(reply, fallback_lines, language)
            return
    reply.close_text()
