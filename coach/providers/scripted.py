"""Offline virtual customer: a deterministic, scenario-driven script (no model, no API key).

Stateless by design: every call replays the trainee's messages in order to rebuild the
customer's state (which objection is open, how often it was missed, how many turns passed),
so the same conversation always gives the same reply and interrupted/retried turns need no
bookkeeping. The customer reacts to the trainee's latest message, then asks the next open
objection, and closes (buy / not_buy) when all are settled or after ``scenario.max_turns``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import AsyncIterator

from coach.contracts import ChatMessage
from coach.scenarios import Objection, Scenario

_CANNED = {
    "en": {
        "didnt_catch": "Sorry, I didn't catch that. Could you say it again?",
        "after_buy": "I've already placed my order, thanks!",
        "after_not_buy": "Thanks, but I've made up my mind for now.",
        "never_mind": "Hmm, okay, never mind that.",
    },
    "zh": {
        "didnt_catch": "不好意思，我没听清，你能再说一遍吗？",
        "after_buy": "我已经下单啦，谢谢主播！",
        "after_not_buy": "谢谢，我先不买了。",
        "never_mind": "好吧，那这个先不说了。",
    },
}

# A missed objection is pressed once (follow_up); after this many misses the customer gives up
# on it and moves on, so a stuck trainee still reaches the closing.
MAX_MISSES = 2

_CJK = re.compile(r"[\u3400-\u9fff]")
_WORDS = re.compile(r"[a-z0-9']+|[\u3400-\u9fff]")
_FILLERS = {"uh", "um", "hmm", "mm", "ah", "er", "you", "the", "a", "oh", "嗯", "啊", "呃", "哦"}
# A clause ends at CJK punctuation, or at ASCII punctuation followed by a space/end ("19.99" stays).
_CLAUSE = re.compile(r".+?(?:[，。；！？、]+|[,.;!?]+(?=\s|$)|$)", re.S)


def normalize(text: str) -> str:
    """Lower-case, collapse whitespace; used for trigger matching."""
    return " ".join(text.lower().split())


def is_garbled(text: str) -> bool:
    """Empty, punctuation-only, or a lone filler word (typical STT noise)."""
    words = _WORDS.findall(text.lower())
    return not words or all(w in _FILLERS for w in words)


def _trigger_hits(trigger: str, text: str) -> bool:
    trig = normalize(trigger)
    if not trig:
        return False
    if _CJK.search(trig):
        # zh has no word boundaries; STT also inserts random spaces, so compare space-free.
        return trig.replace(" ", "") in text.replace(" ", "")
    # en: match at a word start, any suffix ("return" hits "returns", "fragrance" "fragrance-free").
    # Triggers beginning with a symbol ("$") cannot use \b.
    prefix = r"\b" if trig[0].isalnum() else ""
    return re.search(prefix + re.escape(trig), text) is not None


def addresses(objection: Objection, text: str) -> bool:
    """Whether the trainee's text addresses the objection (any trigger word present)."""
    norm = normalize(text)
    return any(_trigger_hits(t, norm) for t in objection.triggers)


def split_clauses(text: str) -> list[str]:
    """Clause-sized chunks that concatenate back to ``text`` (en chunks keep their spaces)."""
    parts = [m.group(0) for m in _CLAUSE.finditer(text)]
    if not parts or "".join(parts) != text:
        return [text]
    return parts


@dataclass
class CustomerState:
    current: int | None = None  # index of the objection last asked, if still open
    handled: set[int] = field(default_factory=set)  # addressed by the trainee
    given_up: set[int] = field(default_factory=set)  # missed MAX_MISSES times
    misses: dict[int, int] = field(default_factory=dict)
    turns: int = 0
    closed: str | None = None  # "buy" | "not_buy"

    def settled(self, index: int) -> bool:
        return index in self.handled or index in self.given_up


class ScriptedCustomerLLM:
    """coach.contracts.LLMProvider backed by the scenario's objection script."""

    def __init__(self, scenario: Scenario | None, language: str = "en"):
        # A shadowed stream has no scenario (nobody plays the customer): the LLM is then never
        # asked, but building the providers must not fail, or the streamer loses transcripts.
        self.scenario = scenario
        self.language = scenario.language if scenario else ("zh" if language.startswith("zh") else "en")
        self._canned = _CANNED[self.language]

    async def stream_reply(self, messages: list[ChatMessage], language: str) -> AsyncIterator[str]:
        # No artificial delay: the whole reply exists at once, chunked like a streaming LLM.
        for chunk in split_clauses(self.reply(messages)):
            if chunk:
                yield chunk

    def reply(self, messages: list[ChatMessage]) -> str:
        """The full reply to the conversation so far (pure function of the trainee's messages)."""
        user_texts = [m.content or "" for m in messages if m.role == "user"]
        if self.scenario is None:
            return self._canned["didnt_catch"]  # no script to follow
        if not user_texts:
            return self.scenario.greeting
        state = CustomerState()
        reply = ""
        for text in user_texts:
            reply = self._step(state, text)
        return reply

    # ---- one trainee turn -------------------------------------------------------------

    def _step(self, state: CustomerState, text: str) -> str:
        assert self.scenario is not None  # reply() answers scenario-less calls itself
        if state.closed:
            return self._canned["after_buy" if state.closed == "buy" else "after_not_buy"]
        if is_garbled(text):
            return self._canned["didnt_catch"]  # does not count as a turn: nothing was said
        state.turns += 1
        objections = self.scenario.objections
        parts: list[str] = []
        pressed = False

        if state.current is not None:
            cur = state.current
            if addresses(objections[cur], text):
                state.handled.add(cur)
                parts.append(objections[cur].satisfied_reply)
            else:
                state.misses[cur] = state.misses.get(cur, 0) + 1
                if state.misses[cur] >= MAX_MISSES:
                    state.given_up.add(cur)
                    parts.append(self._canned["never_mind"])
                elif state.turns < self.scenario.max_turns:
                    parts.append(objections[cur].follow_up)
                    pressed = True
        # Answers to concerns not asked yet count too (a good pitch pre-empts them), silently
        # unless nothing else was said.
        for i, obj in enumerate(objections):
            if not state.settled(i) and i != state.current and addresses(obj, text):
                state.handled.add(i)
                if not parts:
                    parts.append(obj.satisfied_reply)
        if pressed:
            return self._join(parts)

        state.current = None
        open_ = [i for i in range(len(objections)) if not state.settled(i)]
        if not open_ or state.turns >= self.scenario.max_turns:
            state.closed = "buy" if not open_ and not state.given_up else "not_buy"
            parts.append(getattr(self.scenario.closing, state.closed))
        else:
            state.current = open_[0]
            parts.append(objections[open_[0]].question)
        return self._join(parts)

    def _join(self, parts: list[str]) -> str:
        return (" " if self.language == "en" else "").join(parts)

    def state_after(self, messages: list[ChatMessage]) -> CustomerState:
        """The customer's state after the given conversation (reports, tests)."""
        state = CustomerState()
        for m in messages:
            if m.role == "user":
                self._step(state, m.content or "")
        return state
