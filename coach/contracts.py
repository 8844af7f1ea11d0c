"""Contracts shared by the layers: audio output, session events, provider protocols.

Dependencies point one way (server -> media -> coach). These protocols live in coach, the
lowest layer, so media can implement them and server can wire them without importing back up.
All timestamps are ``time.perf_counter_ns()`` (CLOCK_MONOTONIC on Linux: shared by every
process on one machine, which QA relies on).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import Any, AsyncIterator, Protocol, runtime_checkable

import numpy as np

# Inbound audio handed to the coach layer: mono int16 at this rate.
COACH_SAMPLE_RATE = 16_000


@dataclass(slots=True)
class Playout:
    """What the paced output has actually sent of one utterance."""

    utterance_id: str
    first_frame_ns: int | None = None  # when its first 20 ms frame left recv()
    last_frame_ns: int | None = None  # when its latest frame left recv()
    sent_ms: float = 0.0  # audio of this utterance handed to the peer so far
    queued_ms: float = 0.0  # still waiting in the server queue
    done: bool = False  # end() was called and everything pushed was sent


@runtime_checkable
class AudioOutput(Protocol):
    """Paced outbound audio (implemented by media.outbound.PacedAudioTrack).

    The coach pushes PCM per utterance; the track slices it into 20 ms frames on a real-time
    clock and sends silence when empty. ``flush`` drops everything queued at once (barge-in).
    """

    def push(self, utterance_id: str, pcm16: bytes, sample_rate: int) -> None: ...

    def end(self, utterance_id: str) -> None: ...

    def flush(self) -> float:
        """Drop every queued frame now; returns the milliseconds of audio dropped."""
        ...

    def queued_ms(self) -> float: ...

    def wait_done(self, utterance_id: str) -> "asyncio.Future[None]":
        """Resolved when the utterance is done: ended and played out, or flushed."""
        ...

    def playout(self, utterance_id: str) -> Playout: ...


class SessionEvents(Protocol):
    """Sink for everything a live session produces.

    ``emit`` never blocks and never raises; the server forwards events to the WebSocket of the
    room's participants and appends the durable kinds to the store's event log.
    Event dicts always carry ``"type"`` and ``"t_ns"``. Types used:
      state          {"state": "listening|user_speaking|thinking|speaking|interrupted"}
      vad            {"speaker", "edge": "start|end", "t_ns", "speech_start_ns", "speech_end_ns"}
      transcript     {"speaker": "trainee|customer|streamer|mentor", "text", "final", "turn"}
      interim_transcript {"speaker": "trainee", "text", "final": false} speculative, may change
      turn           TurnRecord.as_dict()
      interruption   InterruptionRecord.as_dict()
      alert          {"kind", "message", "severity", ...}
      metrics        live trainee metrics snapshot
      error          {"reason", "stage"}
    """

    def emit(self, event: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class TurnRecord:
    """One user turn and the customer's reply. Fields are perf_counter_ns or None."""

    session_id: str
    turn: int
    user_speech_start_ns: int | None = None
    user_speech_end_ns: int | None = None  # VAD end minus the silence window
    eot_decision_ns: int | None = None  # when we decided the user's turn is over
    stt_final_ns: int | None = None
    llm_first_token_ns: int | None = None
    tts_first_audio_ns: int | None = None
    first_reply_frame_ns: int | None = None  # first reply frame left the paced track
    reply_done_ns: int | None = None
    user_text: str = ""
    reply_planned_text: str = ""
    reply_played_text: str = ""
    interrupted: bool = False
    error: str | None = None  # provider failure for this turn (fallback line was spoken)
    speculative_calls: int = 0  # STT calls started at a pause for this turn
    wasted_calls: int = 0  # ... of which the trainee talked on (result thrown away)
    speculative_llm_calls: int = 0  # LLM requests started at a pause the words did not end
    wasted_llm_calls: int = 0  # ... of which the answer was thrown away (the trainee talked on)
    stage_ms: dict[str, float] = field(default_factory=dict)  # stt/llm/tts provider time

    def as_dict(self) -> dict[str, Any]:
        return {"type": "turn", **asdict(self)}


@dataclass(slots=True)
class InterruptionRecord:
    session_id: str
    turn: int
    user_onset_ns: int
    decision_ns: int
    last_reply_frame_ns: int | None
    flushed_ms: float
    planned_text: str
    played_text: str
    mode: str
    false_interruption: bool = False
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"type": "interruption", **asdict(self)}


# ---- providers -------------------------------------------------------------------------


@dataclass(slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


class STTProvider(Protocol):
    async def transcribe(self, pcm16: np.ndarray, sample_rate: int, language: str) -> str:
        """Transcribe one buffered utterance (mono int16). Raises ProviderError on failure."""
        ...


class LLMProvider(Protocol):
    def stream_reply(self, messages: list[ChatMessage], language: str) -> AsyncIterator[str]:
        """Yield reply text deltas. Raises ProviderError on failure/timeout."""
        ...


class TTSProvider(Protocol):
    sample_rate: int

    def synthesize(self, text: str, language: str, voice: str | None) -> AsyncIterator[bytes]:
        """Yield mono int16 PCM chunks at ``self.sample_rate`` as soon as they exist."""
        ...


class ProviderError(RuntimeError):
    """A provider failed (HTTP error, timeout, subprocess failure). Message says which."""

    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage}: {message}")
        self.stage = stage
