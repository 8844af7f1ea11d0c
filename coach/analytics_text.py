"""Text helpers shared by the analytics, alerts and streamer analysis: speech units (en words, zh
characters), questions, phrase and filler counts, fuzzy token matching, duck-typed scenario access."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{_CJK}]")
WORD_RE = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")

EN_FILLERS = ("um", "umm", "uh", "uhh", "er", "erm", "hmm", "like", "you know", "i mean",
              "basically", "actually", "literally", "sort of", "kind of")
ZH_FILLERS = ("嗯", "呃", "额", "那个", "就是说", "就是", "然后", "反正")
EN_WH_WORDS = {"what", "how", "why", "when", "where", "which", "who", "whose", "whom"}
EN_AUX_STARTERS = {"can", "could", "does", "do", "did", "is", "are", "was", "will", "would",
                   "should", "may", "have", "has", "any"}
ZH_QUESTION_MARKERS = ("吗", "呢", "什么", "怎么", "多少", "为什么", "哪", "几", "是不是",
                       "能不能", "有没有", "可不可以", "会不会")


def has_cjk(text: str) -> bool:
    return bool(CJK_RE.search(text))


def count_units(text: str, language: str) -> int:
    """Speech units: English words; for zh, CJK characters plus any latin words (one each)."""
    if language == "zh":
        return len(CJK_RE.findall(text)) + len(WORD_RE.findall(CJK_RE.sub(" ", text)))
    return len(WORD_RE.findall(text))


def is_question(text: str) -> bool:
    """A customer question: ends in ?/？ or carries question words (zh particles, en wh-/aux start)."""
    stripped = text.strip().rstrip("。.!！ ")
    if not stripped:
        return False
    if stripped.endswith(("?", "？")):
        return True
    if any(marker in stripped for marker in ZH_QUESTION_MARKERS):
        return True
    words = [w.lower() for w in WORD_RE.findall(stripped)]
    return bool(words) and (words[0] in EN_AUX_STARTERS or any(w in EN_WH_WORDS for w in words))


@lru_cache(maxsize=512)
def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(phrase) + r"(?![A-Za-z0-9])", re.IGNORECASE)


def count_phrase(text: str, phrase: str) -> int:
    """Occurrences of ``phrase``: substring for CJK, whole-word (case-insensitive) for latin."""
    phrase = phrase.strip()
    if not phrase:
        return 0
    if has_cjk(phrase):
        return text.casefold().count(phrase.casefold())
    return len(_phrase_pattern(phrase).findall(text))


def count_fillers(text: str, language: str) -> dict[str, int]:
    if language == "zh":
        return _count_zh_fillers(text)
    counts = {f: count_phrase(text, f) for f in EN_FILLERS}
    return {f: n for f, n in counts.items() if n}


def _count_zh_fillers(text: str) -> dict[str, int]:
    # Longest match first so 就是说 is not also counted as 就是.
    fillers = sorted(ZH_FILLERS, key=len, reverse=True)
    counts: dict[str, int] = {}
    i = 0
    while i < len(text):
        for f in fillers:
            if text.startswith(f, i):
                counts[f] = counts.get(f, 0) + 1
                i += len(f)
                break
        else:
            i += 1
    return counts


def content_tokens(text: str) -> set[str]:
    """Tokens for fuzzy matching: CJK bigrams plus latin words of 3+ letters."""
    tokens = {w.lower() for w in WORD_RE.findall(text) if len(w) >= 3}
    for run in re.findall(f"[{_CJK}]+", text):
        tokens.update(run[i:i + 2] for i in range(max(len(run) - 1, 1)))
    return tokens


def similarity(reference: str, text_tokens: set[str]) -> float:
    """Share of ``reference``'s tokens that appear in ``text_tokens`` (0..1)."""
    ref = content_tokens(reference)
    return len(ref & text_tokens) / len(ref) if ref else 0.0


def scenario_field(scenario: Any, name: str, default: Any = None) -> Any:
    """Read a field from a Scenario model or a plain dict (None-safe)."""
    if scenario is None:
        return default
    value = scenario.get(name, default) if isinstance(scenario, dict) else getattr(scenario, name, default)
    return default if value is None else value


def alert_overrides(scenario: Any) -> dict[str, Any]:
    """The scenario's AlertSettings overrides as a plain dict (dict or pydantic model)."""
    raw = scenario_field(scenario, "alerts", {}) or {}
    if isinstance(raw, BaseModel):
        return raw.model_dump(exclude_unset=True)
    return dict(raw)
