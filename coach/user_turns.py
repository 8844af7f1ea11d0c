"""The trainee's turns as the agent tracks them: numbering, the turn being answered, what carries
over when the trainee talks on while the customer is thinking, and words said over the customer."""

from __future__ import annotations

import numpy as np

from coach.contracts import TurnRecord
from coach.vad import SpeechEnd

Heard = tuple[TurnRecord, str]  # an unnumbered turn and its transcript


class UserTurns:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.count = 0  # number of the latest turn
        self.thinking: TurnRecord | None = None  # committed; its reply is not audible yet
        self.thinking_audio: np.ndarray | None = None  # ... and its audio (carried if STT is cut short)
        self._carry: tuple[TurnRecord, str | None, np.ndarray | None] | None = None
        self.overlap_heard: Heard | None = None  # words over the customer, waiting for the policy
        self._queued: list[Heard] = []  # append mode: turns to answer after the reply

    def new(self, onset_ns: int | None) -> TurnRecord:
        self.count += 1
        return TurnRecord(session_id=self.session_id, turn=self.count, user_speech_start_ns=onset_ns)

    def numbered(self, heard: Heard) -> Heard:
        heard[0].turn = self.count = self.count + 1
        return heard

    def forget_empty(self, turn: TurnRecord) -> None:
        """Nothing was said (noise): the turn is dropped, its number reused when it was the latest."""
        self.thinking = None
        self.count -= 1 if turn.turn == self.count else 0

    def carry_thinking(self) -> None:
        """Speech while thinking: keep what the trainee said so far for the next utterance."""
        turn, self.thinking = self.thinking, None
        if turn is not None:
            # STT done: carry its text; not done: carry the audio to transcribe with the rest
            text = turn.user_text or None
            self._carry = (turn, text, None if text else self.thinking_audio)

    @property
    def carrying(self) -> bool:
        return self._carry is not None

    def take(self, end: SpeechEnd) -> tuple[TurnRecord, str | None, np.ndarray]:
        """The turn ``end`` closes: a new one, or the carried one merged with the new speech."""
        if self._carry is None:
            return self.new(end.onset_ns), None, end.audio
        turn, text, audio = self._carry
        self._carry = None
        # the cancelled attempt's provider timings don't describe the merged turn
        turn.llm_first_token_ns = turn.tts_first_audio_ns = None
        turn.stage_ms.clear()
        turn.user_text = ""
        if text is None and audio is not None:  # STT hadn't finished: transcribe both together
            return turn, None, np.concatenate([audio, end.audio])
        return turn, text, end.audio  # text prefix; the new audio still needs STT

    def take_heard(self) -> Heard | None:
        heard, self.overlap_heard = self.overlap_heard, None
        return heard

    def queue_heard(self) -> None:
        if self.overlap_heard is not None:
            self._queued.append(self.overlap_heard)
            self.overlap_heard = None

    def next_queued(self) -> Heard | None:
        return self._queued.pop(0) if self._queued else None
