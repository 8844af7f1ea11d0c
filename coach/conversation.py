"""What a practice session said and did: turns, interruptions, the transcript and the LLM context."""

from __future__ import annotations

from typing import Any, Callable

from coach.context import ChatContext
from coach.contracts import ChatMessage, InterruptionRecord, TurnRecord


class ConversationLog:
    """Records each finished turn / reply / interruption once and emits its event."""

    def __init__(self, context: ChatContext, emit: Callable[..., None]) -> None:
        self.context = context
        self._emit = emit
        self.turns: list[TurnRecord] = []
        self.interruptions: list[InterruptionRecord] = []
        self.transcript: list[dict[str, Any]] = []

    def trainee_said(self, turn: TurnRecord, text: str) -> None:
        entry = {"speaker": "trainee", "text": text, "final": True, "turn": turn.turn,
                 "start_ns": turn.user_speech_start_ns, "end_ns": turn.user_speech_end_ns}
        self.transcript.append(entry)
        self._emit("transcript", **entry)

    def reply_finished(self, turn: TurnRecord | None, *, planned: str, played: str, cut: bool,
                       first_frame_ns: int | None, last_frame_ns: int | None) -> None:
        """The customer's reply ended (played out or cut): its turn, transcript line and context."""
        if turn is not None:
            turn.reply_planned_text, turn.reply_played_text = planned, played
            turn.interrupted = cut
            turn.first_reply_frame_ns = first_frame_ns
            turn.reply_done_ns = last_frame_ns
            self.turns.append(turn)
            self._emit("turn", **turn.as_dict())
        if planned:
            entry = {"speaker": "customer", "text": played, "planned": planned, "final": True,
                     "turn": turn.turn if turn else 0, "interrupted": cut,
                     "start_ns": first_frame_ns, "end_ns": last_frame_ns}
            self.transcript.append(entry)
            self._emit("transcript", **entry)
        if turn is not None and turn.user_text:
            self.context.add(ChatMessage("user", turn.user_text))
        if played:
            self.context.add(ChatMessage("assistant", played))
        self.context.compact()  # after the reply: off the trainee-to-customer hot path

    def interrupted(self, rec: InterruptionRecord) -> None:
        self.interruptions.append(rec)
        self._emit("interruption", **rec.as_dict() | {"type": "interruption"})
