"""Turn-taking decisions as pure functions: ``step(state, event) -> (state, effects)``.

No clock, no I/O, no asyncio: the agent (coach/agent.py) feeds events from the VAD segmenter,
its provider tasks and the output track, and performs the effects. Everything here is tested
table-driven in milliseconds (tests/test_turn_policy.py).

Endpointing (semantic end of turn): after a short pause the agent transcribes the utterance so
far *speculatively* and asks smart-turn; ``Speculated`` brings the answer back. A complete turn
is committed at once (the speculative transcript is the turn's transcript), an incomplete one
waits for more speech up to the segmenter's maximum silence (``SpeechEnd``), then is committed
anyway. Speech resuming after a pause throws the speculation away (counted as wasted).

Overlap (the trainee speaks while the customer does) is decided by one small class per
scenario interruption mode (coach/interrupt_modes.py); the transcript rules are coach/turn_text.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Re-exported (``X as X``): callers read every turn-taking rule through this module (``tp.Overlap``).
from coach.interrupt_modes import AppendMode as AppendMode
from coach.interrupt_modes import IgnoreMode as IgnoreMode
from coach.interrupt_modes import InterruptMode as InterruptMode
from coach.interrupt_modes import KeywordsMode as KeywordsMode
from coach.interrupt_modes import Overlap as Overlap
from coach.interrupt_modes import interrupt_mode as interrupt_mode
from coach.turn_text import Verdict as Verdict
from coach.turn_text import is_filler as is_filler
from coach.turn_text import text_verdict as text_verdict
from coach.turn_text import turn_complete as turn_complete
from coach.turns import TurnState

L, U, T, S, I = (TurnState.LISTENING, TurnState.USER_SPEAKING, TurnState.THINKING,
                 TurnState.SPEAKING, TurnState.INTERRUPTED)


# ---- the policy ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyState:
    phase: TurnState = L
    pause_seq: int = 0  # numbers the pauses of the current utterance's speculation
    speculating: bool = False  # a speculation of the current pause is running or done
    overlap: bool = False  # the current trainee utterance began while the customer spoke
    short_overlap: bool = False  # ... and was too short to count (click)
    barge_open: bool = False  # output stopped at an onset; waiting for the words to decide
    resolving: bool = False  # the overlapping words are being transcribed
    overlap_ended: bool = False  # ... and the utterance already ended (maximum silence)
    paused: bool = False  # the trainee is in a pause of the current utterance right now
    queued_turns: int = 0  # append mode: turns to answer after the reply


# events
@dataclass(frozen=True)
class SpeechStart:
    echo_guarded: bool = False  # within barge_in.echo_guard_ms of the reply's first frame


@dataclass(frozen=True)
class Pause:
    """The trainee went quiet for the short pause (still inside the utterance)."""
    duration_ms: float = 1000.0  # speech so far


@dataclass(frozen=True)
class Resume:
    """Speech again after a Pause, before the maximum silence."""


@dataclass(frozen=True)
class SpeechEnd:
    """Maximum silence: the utterance is over whatever the model thinks."""
    duration_ms: float = 1000.0


@dataclass(frozen=True)
class Speculated:
    seq: int
    complete: bool


@dataclass(frozen=True)
class OverlapHeard:
    """Transcript of an utterance spoken over the customer (decided by the interrupt mode)."""
    decision: Overlap


@dataclass(frozen=True)
class TurnEmpty:
    """The committed turn's transcript was empty: noise, nothing to answer."""


@dataclass(frozen=True)
class ReplyAudible:
    """The reply's first audio was queued."""


@dataclass(frozen=True)
class ReplyDone:
    """The reply's last frame was played (or the reply ended without audio)."""
    trainee_talking: bool = False


@dataclass(frozen=True)
class BargeTimeout:
    """false_interruption_timeout passed with no decision and no speech going on."""


Event = (SpeechStart | Pause | Resume | SpeechEnd | Speculated | OverlapHeard | TurnEmpty | ReplyAudible
         | ReplyDone | BargeTimeout)


# effects (performed by the agent, in order)
@dataclass(frozen=True)
class SetState:
    state: TurnState


@dataclass(frozen=True)
class Speculate:
    seq: int  # transcribe the utterance so far + ask smart-turn; answer with Speculated(seq)


@dataclass(frozen=True)
class DropSpeculation:
    pass  # the trainee went on talking: the speculative call was wasted


@dataclass(frozen=True)
class CommitTurn:
    pass  # end the user turn: reuse the speculation (await it if running) or transcribe now


@dataclass(frozen=True)
class MergeIntoTurn:
    pass  # speech while thinking: drop the pending reply, keep what was said so far


@dataclass(frozen=True)
class StopOutput:
    pass  # barge-in onset: stop the customer's audio now, remember the position


@dataclass(frozen=True)
class ResolveOverlap:
    pass  # transcribe the overlapping utterance, answer with OverlapHeard


@dataclass(frozen=True)
class ResumeOutput:
    false_interruption: bool = True  # play on from the remembered position


@dataclass(frozen=True)
class CutReply:
    """Real interruption: the reply ends at what was heard. ``start_turn``: the trainee's
    utterance is over, its words are the next turn; otherwise the utterance goes on as a user
    turn and its words so far are the current pause's speculation (``AdoptOverlap``)."""
    start_turn: bool = True


@dataclass(frozen=True)
class AdoptOverlap:
    seq: int  # use the overlap's transcript as speculation ``seq``; answer with Speculated(seq)


@dataclass(frozen=True)
class QueueTurn:
    pass  # append mode: answer the overlapping words after the reply


@dataclass(frozen=True)
class StartQueuedTurn:
    pass


Effect = (SetState | Speculate | DropSpeculation | CommitTurn | MergeIntoTurn | StopOutput | ResolveOverlap
          | ResumeOutput | CutReply | AdoptOverlap | QueueTurn | StartQueuedTurn)


def _to(state: PolicyState, phase: TurnState, effects: list[Effect], **changes: object) -> PolicyState:
    if state.phase != phase:
        effects.append(SetState(phase))
    return replace(state, phase=phase, **changes)  # type: ignore[arg-type]


def step(state: PolicyState, event: Event, mode: InterruptMode, *,
         barge_min_ms: float = 160.0) -> tuple[PolicyState, list[Effect]]:
    """One decision. ``barge_min_ms``: overlap shorter than this is a click, never a turn."""
    fx: list[Effect] = []
    if isinstance(event, Pause):
        state = replace(state, paused=True)
    elif isinstance(event, (Resume, SpeechStart, SpeechEnd)):
        state = replace(state, paused=False)
    ph = state.phase
    if isinstance(event, SpeechStart):
        if ph == L:
            return _to(state, U, fx, pause_seq=0, speculating=False), fx
        if ph == T:
            fx.append(MergeIntoTurn())
            return _to(state, U, fx, pause_seq=0, speculating=False), fx
        if ph == S:
            if mode.stops_output_at_onset and not event.echo_guarded:
                fx.append(StopOutput())
                return _to(state, I, fx, overlap=True, barge_open=True), fx
            return replace(state, overlap=True), fx
        return state, fx
    if isinstance(event, Pause):
        if ph == I and state.barge_open and not state.resolving:
            if event.duration_ms < barge_min_ms:  # a click: not worth a transcription
                fx.append(ResumeOutput(false_interruption=True))
                return _to(state, S, fx, barge_open=False), fx
            fx.append(ResolveOverlap())
            return replace(state, resolving=True, overlap_ended=False), fx
        if ph == U and not state.overlap:
            seq = state.pause_seq + 1
            fx.append(Speculate(seq))
            return replace(state, pause_seq=seq, speculating=True), fx
        return state, fx
    if isinstance(event, Resume):
        if ph == I and state.resolving:
            return replace(state, overlap_ended=False), fx
        if ph == S and state.overlap and mode.stops_output_at_onset:
            # the overlap that was judged a click/filler goes on: it is speech after all
            fx.append(StopOutput())
            return _to(state, I, fx, barge_open=True, resolving=False), fx
        if ph == U and state.speculating:
            fx.append(DropSpeculation())
            return replace(state, speculating=False), fx
        return state, fx
    if isinstance(event, Speculated):
        if ph == U and state.speculating and event.seq == state.pause_seq and event.complete:
            fx.append(CommitTurn())
            return _to(state, T, fx, speculating=False), fx
        return state, fx
    if isinstance(event, SpeechEnd):
        overlap = state.overlap
        state = replace(state, overlap=False)
        if ph == I and state.barge_open:
            if state.resolving:
                return replace(state, overlap_ended=True), fx
            if event.duration_ms < barge_min_ms:  # a click: not worth a transcription
                fx.append(ResumeOutput(false_interruption=True))
                return _to(state, S, fx, barge_open=False), fx
            fx.append(ResolveOverlap())
            return replace(state, resolving=True, overlap_ended=True), fx
        if ph == S:
            # interrupt mode decides overlap through the barge-in path; ignore never does
            if (overlap and event.duration_ms >= barge_min_ms and not mode.stops_output_at_onset
                    and not isinstance(mode, IgnoreMode)):
                fx.append(ResolveOverlap())
            return state, fx
        if ph in (L, U):
            if overlap and event.duration_ms < barge_min_ms:
                return _to(state, L, fx, speculating=False), fx  # a click begun during the reply
            fx.append(CommitTurn())
            return _to(state, T, fx, speculating=False), fx
        return state, fx
    if isinstance(event, OverlapHeard):
        d = event.decision
        if ph == I and state.barge_open:
            ended = state.overlap_ended
            state = replace(state, barge_open=False, resolving=False, overlap_ended=False)
            if d in (Overlap.RESUME, Overlap.NOTHING):
                fx.append(ResumeOutput(false_interruption=True))
                return _to(state, S, fx), fx
            if ended:
                fx.append(CutReply())
                return _to(state, T, fx, overlap=False), fx
            # decided at a pause: the trainee's turn goes on until its own end of turn
            fx.append(CutReply(start_turn=False))
            if not state.paused:  # talking again: the next pause speculates on everything
                return _to(state, U, fx, overlap=False, speculating=False), fx
            state = _to(state, U, fx, overlap=False, speculating=True, pause_seq=state.pause_seq + 1)
            fx.append(AdoptOverlap(state.pause_seq))
            return state, fx
        if ph == S:
            if d == Overlap.INTERRUPT:
                fx.extend([StopOutput(), CutReply()])
                return _to(state, T, fx), fx
            if d == Overlap.APPEND:
                fx.append(QueueTurn())
                return replace(state, queued_turns=state.queued_turns + 1), fx
        if ph == T and d == Overlap.APPEND:
            fx.append(QueueTurn())
            return replace(state, queued_turns=state.queued_turns + 1), fx
        if ph == L and d in (Overlap.APPEND, Overlap.INTERRUPT):
            fx.append(QueueTurn())
            fx.append(StartQueuedTurn())
            return _to(state, T, fx), fx
        return state, fx
    if isinstance(event, BargeTimeout):
        if ph == I and state.barge_open and not state.resolving:
            fx.append(ResumeOutput(false_interruption=True))
            return _to(state, S, fx, barge_open=False), fx
        return state, fx
    if isinstance(event, TurnEmpty):
        if ph == T:
            return _to(state, L, fx), fx
        return state, fx
    if isinstance(event, ReplyAudible):
        if ph == T:
            return _to(state, S, fx), fx
        return state, fx
    if isinstance(event, ReplyDone):
        if ph not in (S, T):
            return state, fx
        if state.queued_turns:
            fx.append(StartQueuedTurn())
            return _to(state, T, fx, queued_turns=state.queued_turns - 1), fx
        state = _to(state, L, fx)
        if event.trainee_talking:  # already talking over the reply's end
            state = _to(state, U, fx, overlap=False, pause_seq=0, speculating=False)
        return state, fx
    raise TypeError(f"unknown event {event!r}")
