"""What a transcript says about turn-taking: does it read like a finished turn, or only a filler?

Pure text rules (English and Chinese), used by endpointing (coach/speculation.py, the agent) and
by the interruption modes (coach/interrupt_modes.py).
"""

from __future__ import annotations

import re
from enum import Enum


class Verdict(str, Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNKNOWN = "unknown"


# Words a finished English sentence rarely ends on (articles, prepositions, conjunctions...).
_EN_DANGLING = frozenset(
    "a an the and or but so because if for to of in on at with from by about as than that which "
    "who whose my your our their his her its is are was were be been am do does did can could will "
    "would should shall may might must have has had very really just also like um uh".split())
# Chinese clause-final characters that announce more to come (prepositions, conjunctions, copula).
_ZH_DANGLING = frozenset("给和跟把被对从为在是就还很这那一而且但因所以如果的话让向往比")
_ZH_FINAL_PARTICLES = frozenset("吗呢吧嘛啊呀么")
_TERMINAL = ("?", "!", "？", "！", "。")

# Interjections and backchannels: a transcript made only of these means "nothing said"
# (a barge-in that turns out to be "Ah!" or "嗯" is a false interruption, not a turn).
_EN_FILLERS = frozenset(
    "ah aah oh ooh uh uhh um umm hmm hm mm mmm mhm uh-huh er erm eh huh ha hah wow oops ow ouch "
    "ahem achoo".split())
_ZH_FILLERS = frozenset("嗯啊哦呃额唉哎噢哈呀诶欸喔嘿咳哼")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_PUNCT = re.compile(r"[\s\.,!?;:…，。！？；：、\"'“”‘’()（）\-~～]+")


def text_verdict(text: str, language: str) -> Verdict:
    """Does this transcript read like a finished turn? Punctuation and the last word decide."""
    t = text.strip()
    if not t:
        return Verdict.UNKNOWN
    if t.endswith(("...", "…", ",", "，", "、", "-", "—")):
        return Verdict.INCOMPLETE  # whisper marks a trailing-off utterance this way
    if language.startswith("zh"):
        core = _PUNCT.sub("", t)
        if not core:
            return Verdict.UNKNOWN
        if core[-1] in _ZH_FINAL_PARTICLES or t.endswith(("？", "?")):
            return Verdict.COMPLETE
        if core[-1] in _ZH_DANGLING:
            return Verdict.INCOMPLETE
        return Verdict.COMPLETE if t.endswith(("。", "！", "!")) else Verdict.UNKNOWN
    words = _WORD.findall(t.lower())
    if words and words[-1] in _EN_DANGLING:
        return Verdict.INCOMPLETE
    return Verdict.COMPLETE if t.endswith(_TERMINAL + (".",)) else Verdict.UNKNOWN


def is_filler(text: str, language: str) -> bool:
    """True when the transcript holds no words but interjections (or nothing at all)."""
    core = _PUNCT.sub(" ", text.strip().lower()).split()
    if not core:
        return True
    for token in core:
        if token in _EN_FILLERS:
            continue
        if all(ch in _ZH_FILLERS for ch in token):
            continue
        return False
    return True


def turn_complete(text: str, p_complete: float | None, language: str, threshold: float) -> bool:
    """Combine the transcript's verdict with smart-turn's P(complete) (None: no model)."""
    v = text_verdict(text, language)
    if v is Verdict.INCOMPLETE:
        return False
    if v is Verdict.COMPLETE:
        return True
    return p_complete is not None and p_complete >= threshold
