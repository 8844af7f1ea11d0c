"""Turn state machine of the customer agent, as an explicit transition table."""

from __future__ import annotations

import time
from enum import Enum
from typing import Callable


class TurnState(str, Enum):
    LISTENING = "listening"  # waiting for the trainee
    USER_SPEAKING = "user_speaking"  # trainee speech confirmed by VAD
    THINKING = "thinking"  # STT / LLM / first TTS of the reply
    SPEAKING = "speaking"  # reply audio queued or playing
    INTERRUPTED = "interrupted"  # trainee barged in; output flushed, deciding real vs false


L, U, T, S, I = (TurnState.LISTENING, TurnState.USER_SPEAKING, TurnState.THINKING,
                 TurnState.SPEAKING, TurnState.INTERRUPTED)

TRANSITIONS: dict[TurnState, frozenset[TurnState]] = {
    L: frozenset({U, T, S}),  # T/S: greeting, queued (append-mode) turns
    U: frozenset({T, L}),  # L: empty transcript / noise
    T: frozenset({S, U, L}),  # U: speech while thinking merges turns; L: nothing to say
    S: frozenset({L, I, T}),  # T: append-mode queued turn right after the reply
    I: frozenset({T, S, L, U}),  # T: real interruption; S: false interruption resumes;
    # U: real interruption decided at a pause, the trainee is still mid-turn
}


class IllegalTransition(RuntimeError):
    pass


class TurnStateMachine:
    def __init__(self, on_change: Callable[[TurnState, TurnState, int], None] | None = None):
        self.state = TurnState.LISTENING
        self.changed_ns = time.perf_counter_ns()
        self._on_change = on_change

    def can(self, new: TurnState) -> bool:
        return new in TRANSITIONS[self.state]

    def to(self, new: TurnState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"{self.state.value} -> {new.value}")
        old, self.state = self.state, new
        self.changed_ns = time.perf_counter_ns()
        if self._on_change is not None:
            self._on_change(old, new, self.changed_ns)
