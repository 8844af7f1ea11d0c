"""What the words the trainee says over the customer mean, one small class per scenario
interruption mode (interrupt | ignore | append | keywords); coach/turn_policy.py acts on the answer."""

from __future__ import annotations

from enum import Enum

from coach.turn_text import is_filler


class Overlap(str, Enum):
    NOTHING = "nothing"  # keep speaking, the words are dropped
    INTERRUPT = "interrupt"  # cut the reply, the words are the next turn
    RESUME = "resume"  # false interruption: play on from where the output stopped
    APPEND = "append"  # answer the words after the reply


class InterruptMode:
    name = "interrupt"
    stops_output_at_onset = True  # pause the customer at the first confident speech onset

    def on_text(self, text: str, language: str) -> Overlap:
        return Overlap.RESUME if is_filler(text, language) else Overlap.INTERRUPT


class IgnoreMode(InterruptMode):
    name = "ignore"
    stops_output_at_onset = False

    def on_text(self, text: str, language: str) -> Overlap:
        return Overlap.NOTHING


class AppendMode(InterruptMode):
    name = "append"
    stops_output_at_onset = False

    def on_text(self, text: str, language: str) -> Overlap:
        return Overlap.NOTHING if is_filler(text, language) else Overlap.APPEND


class KeywordsMode(InterruptMode):
    name = "keywords"
    stops_output_at_onset = False

    def __init__(self, keywords: list[str]):
        self.keywords = [k.lower() for k in keywords if k.strip()]

    def on_text(self, text: str, language: str) -> Overlap:
        low = text.lower()
        return Overlap.INTERRUPT if any(k in low for k in self.keywords) else Overlap.NOTHING


def interrupt_mode(name: str | None, keywords: list[str] | None = None) -> InterruptMode:
    if name in (None, "", "interrupt"):
        return InterruptMode()
    if name == "ignore":
        return IgnoreMode()
    if name == "append":
        return AppendMode()
    if name == "keywords":
        return KeywordsMode(keywords or [])
    raise ValueError(f"unknown interruption mode {name!r} (interrupt|ignore|append|keywords)")
