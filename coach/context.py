"""Bounded LLM context: persona prompt + the latest turns within a token budget + a short
running summary of the older ones.

Every turn used to send the whole conversation: over a 30-minute session (~200 turns) the
request grows without bound and the openai client's request preparation alone went from
0.28 ms at 2 messages to 15.7 ms at 152, on the event loop (issue 14). ``messages()`` is O(window);
``compact()`` runs after a reply has finished playing (off the hot path between the trainee's
last word and the customer's first).

The summary is extractive (no extra LLM call): the latest lines that fell out of the window,
shortened, newest kept when it is over its own budget.
"""

from __future__ import annotations

import re
from collections import deque

from coach.contracts import ChatMessage

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def estimate_tokens(text: str) -> int:
    """Rough token count without a tokenizer: ~4 characters per English token, ~1 per Hanzi."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4 + 4  # +4: per-message overhead of the chat format


class ChatContext:
    def __init__(self, budget_tokens: int = 1200, summary_chars: int = 600, language: str = "en"):
        if budget_tokens < 50:
            raise ValueError("llm context budget must be at least 50 tokens")
        self.budget_tokens = budget_tokens
        self.summary_chars = summary_chars
        self.language = language
        self._recent: deque[ChatMessage] = deque()
        self._recent_tokens = 0
        self.summary = ""
        self.dropped = 0  # messages folded into the summary so far

    def add(self, message: ChatMessage) -> None:
        self._recent.append(message)
        self._recent_tokens += estimate_tokens(message.content)

    def messages(self, system: str) -> list[ChatMessage]:
        out = [ChatMessage("system", system)]
        if self.summary:
            head = "此前对话摘要：" if self.language.startswith("zh") else "Earlier in this conversation: "
            out.append(ChatMessage("system", head + self.summary))
        out.extend(self._recent)
        return out

    def compact(self) -> None:
        """Fold the oldest messages into the summary until the window fits the budget (keeping
        at least the last exchange)."""
        while self._recent_tokens > self.budget_tokens and len(self._recent) > 2:
            old = self._recent.popleft()
            self._recent_tokens -= estimate_tokens(old.content)
            self.dropped += 1
            who = ("顾客" if old.role == "assistant" else "主播") if self.language.startswith("zh") else (
                "you" if old.role == "assistant" else "the seller")
            line = f"{who}: {old.content.strip()[:160]}"
            self.summary = f"{self.summary} | {line}" if self.summary else line
        if len(self.summary) > self.summary_chars:
            self.summary = "…" + self.summary[-self.summary_chars:]

    def __len__(self) -> int:
        return len(self._recent)
