"""coach/context.py: bounded LLM context with a running summary."""

from __future__ import annotations

import pytest

from coach.context import ChatContext, estimate_tokens
from coach.contracts import ChatMessage


def test_long_session_stays_within_budget_and_keeps_the_latest_turns() -> None:
    ctx = ChatContext(budget_tokens=200, summary_chars=300)
    for i in range(200):  # a 30-minute session
        ctx.add(ChatMessage("user", f"Question number {i}: is this cream good for dry skin in winter?"))
        ctx.add(ChatMessage("assistant", f"Answer {i}: yes, it is rich and has no fragrance."))
        ctx.compact()
    msgs = ctx.messages("You are a customer.")
    assert msgs[0] == ChatMessage("system", "You are a customer.")
    assert msgs[1].role == "system" and msgs[1].content.startswith("Earlier in this conversation: ")
    assert len(msgs[1].content) <= 300 + 40
    recent = msgs[2:]
    assert sum(estimate_tokens(m.content) for m in recent) <= 200
    assert recent[-1].content.startswith("Answer 199") and recent[-2].content.startswith("Question number 199")
    assert "198" in msgs[1].content or any("198" in m.content for m in recent)  # nothing just vanished
    assert len(msgs) < 15 and ctx.dropped > 350


def test_short_conversation_is_sent_whole_and_chinese_counts_per_character() -> None:
    ctx = ChatContext(budget_tokens=1200, language="zh")
    ctx.add(ChatMessage("user", "这款面霜适合敏感肌吗"))
    ctx.add(ChatMessage("assistant", "适合的。"))
    ctx.compact()
    assert [m.content for m in ctx.messages("p")] == ["p", "这款面霜适合敏感肌吗", "适合的。"]
    assert estimate_tokens("这款面霜适合敏感肌吗") >= 10
    with pytest.raises(ValueError):
        ChatContext(budget_tokens=10)
