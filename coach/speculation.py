"""End-of-turn judging: STT (+ smart-turn) of the utterance so far, speculated at a pause.

When the trainee pauses, the agent starts transcribing what was said so far; if the pause
becomes the end of the turn and nothing was said since, the transcript is already there
(speculation hides STT latency). The ``Speculator`` owns the one live speculation and counts
started / wasted calls for the turn record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Coroutine

import numpy as np

from coach import turn_policy as tp
from coach.contracts import ChatMessage, ProviderError, TurnRecord
from coach.llm_prefetch import LlmPrefetch, ReplyLLM
from coach.smart_turn import SmartTurn

log = logging.getLogger(__name__)

_now = time.perf_counter_ns

Judgement = tuple[str, float | None, str | None]  # (transcript, P(complete) | None, error | None)


@dataclass
class SpeculationCounts:
    """Provider calls made at pauses for one utterance, and how many of them were thrown away."""

    stt: int = 0
    stt_wasted: int = 0
    llm: int = 0
    llm_wasted: int = 0


@dataclass
class Speculation:
    """STT (+ smart-turn) of the utterance so far, started at a pause."""

    seq: int
    task: asyncio.Task[Judgement]
    started_ns: int
    finished_ns: int | None = None
    llm: LlmPrefetch | None = None  # the answer, asked for when the words did not end the turn


# Smart-turn costs ~25-100 ms of CPU a call (a quarter of a live session's server CPU when it ran
# at every pause, bench_profile), and most turns are decided by their words (a final "?", 吗/呢):
# by default the model runs only after the transcript, and only when the words did not decide.
# That costs an undecided turn the model's time after STT; a grace (seconds) runs it beside a
# slower STT instead.
SMART_GRACE_S: float | None = None


async def _transcribe(stt: Any, audio: np.ndarray, sample_rate: int, language: str) -> tuple[str, str | None]:
    try:
        return await stt.transcribe(audio, sample_rate, language), None
    except ProviderError as exc:
        return "", str(exc)


async def judge(audio: np.ndarray, *, stt: Any, smart: SmartTurn | None, language: str,
                sample_rate: int, smart_grace_s: float | None = SMART_GRACE_S) -> Judgement:
    """Transcript + smart-turn P(complete) of the utterance so far (the model only when the words
    do not decide; with a grace, beside an STT slower than the grace)."""
    stt_task = asyncio.ensure_future(_transcribe(stt, audio, sample_rate, language))
    p_future: asyncio.Future[float] | None = None

    def ask_model() -> asyncio.Future[float]:
        assert smart is not None
        return asyncio.get_running_loop().run_in_executor(smart_executor(), smart.probability, audio)

    try:
        if smart is not None and smart_grace_s is not None:
            done, _ = await asyncio.wait({stt_task}, timeout=smart_grace_s)
            if not done:  # an STT slower than the grace: the model runs beside it
                p_future = ask_model()
        text, error = await stt_task
    finally:
        stt_task.cancel()  # no-op once done; stops the transcription when the judgement is dropped
    decided = tp.text_verdict(text, language) is not tp.Verdict.UNKNOWN
    if decided and p_future is not None:
        p_future.cancel()  # the words decide; don't wait for the model
        p_future = None
    elif not decided and smart is not None and p_future is None:
        p_future = ask_model()
    p = None
    if p_future is not None:
        try:
            p = await p_future
        except Exception:  # noqa: BLE001 - a model failure degrades to text + silence
            log.exception("smart-turn failed")
    return text.strip(), p, error


async def already_heard(text: str) -> Judgement:
    """A judgement whose words are known already (the interruption's, adopted at a pause)."""
    return text, None, None


_smart_pool: ThreadPoolExecutor | None = None


def smart_executor() -> ThreadPoolExecutor:
    """One thread for smart-turn inference in this process (~25-100 ms a call, off the loop)."""
    global _smart_pool
    if _smart_pool is None:
        _smart_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
    return _smart_pool


class Speculator:
    """At most one live speculation; counts (started, wasted) for the utterance being built.

    ``spawn`` starts an owned task; ``on_result(spec, judgement)`` runs when the live speculation
    finishes (not when it was cancelled, failed or replaced); ``stats`` is the agent's counters.
    """

    def __init__(self, *, spawn: Callable[[Coroutine[Any, Any, Any], str], asyncio.Task[Any]],
                 on_result: Callable[[Speculation, Judgement], None], stats: dict[str, int]) -> None:
        self._spawn = spawn
        self._on_result = on_result
        self._stats = stats
        self.current: Speculation | None = None
        self._counts = SpeculationCounts()  # for the utterance being built

    def start(self, seq: int, work: Coroutine[Any, Any, Judgement], name: str, *, counted: bool = True) -> None:
        """Replace the live speculation (not counted as wasted) with ``work``."""
        self.drop(wasted=False)
        task = self._spawn(work, name)
        spec = self.current = Speculation(seq, task, _now())
        if counted:
            self._counts.stt += 1
            self._stats["speculative_calls"] += 1
        task.add_done_callback(lambda t: self._finished(spec, t))

    def _finished(self, spec: Speculation, task: asyncio.Task[Judgement]) -> None:
        spec.finished_ns = _now()
        if task.cancelled() or task.exception() is not None or spec is not self.current:
            return
        self._on_result(spec, task.result())

    def drop(self, wasted: bool = True) -> None:
        spec, self.current = self.current, None
        if spec is None:
            return
        if not spec.task.done():
            spec.task.cancel()  # the decode already running in the whisper thread finishes unseen
        if wasted:
            self._counts.stt_wasted += 1
            self._stats["wasted_calls"] += 1
        if spec.llm is not None:  # an answer nobody will hear: a wasted (paid) call either way
            spec.llm.cancel()
            self._counts.llm_wasted += 1
            self._stats["wasted_llm_calls"] += 1

    def prefetch(self, spec: Speculation, llm: Any, messages: list[ChatMessage], language: str) -> None:
        """Ask the LLM already, for the live speculation's transcript (see coach/llm_prefetch.py)."""
        if spec is not self.current or spec.llm is not None:
            return
        spec.llm = LlmPrefetch(llm, messages, language, self._spawn)
        self._counts.llm += 1
        self._stats["speculative_llm_calls"] += 1

    def take(self) -> tuple[Speculation | None, SpeculationCounts]:
        """End the utterance: the live speculation (now owned by the caller) and its counts."""
        spec, self.current = self.current, None
        counts, self._counts = self._counts, SpeculationCounts()
        return spec, counts

    def reply_llm(self, spec: Speculation | None, messages: list[ChatMessage], llm: Any,
                  turn: TurnRecord) -> ReplyLLM:
        """The committed turn's LLM: the prefetched answer when it was asked the same conversation."""
        prefetch = spec.llm if spec is not None else None
        if prefetch is not None and prefetch.messages != messages:  # the trainee's words changed
            turn.wasted_llm_calls += 1
            self._stats["wasted_llm_calls"] += 1
        return ReplyLLM(llm, prefetch)


async def hear_turn(turn: TurnRecord, audio: np.ndarray | None, text: str | None, spec: Speculation | None, *,
                    stt: Any, language: str, sample_rate: int,
                    emit: Callable[..., None]) -> tuple[str, str | None]:
    """The committed turn's transcript and STT error: the speculation's when it heard everything,
    else STT of ``audio`` (appended to ``text``, the part already transcribed). Times turn's stt stage."""
    error: str | None = None
    if spec is not None and text is None:
        # the speculative transcript heard everything said (nothing since the pause)
        heard, _p, error = await spec.task
        if error is not None:
            emit("error", reason=error, stage="stt")
        finished = spec.finished_ns or _now()
        turn.stage_ms["stt"] = (finished - spec.started_ns) / 1e6  # provider time, at the pause
        # The transcript is final when the turn is committed: never before the decision, so
        # the stage chain (endpointing -> stt -> llm) stays ordered; stt shows only what the
        # speculation failed to hide.
        turn.stt_final_ns = max(finished, turn.eot_decision_ns or finished)
        text = heard
    elif audio is not None:
        if spec is not None:
            spec.task.cancel()
        t0 = _now()
        try:
            heard = await stt.transcribe(audio, sample_rate, language)
        except ProviderError as exc:
            error, heard = str(exc), ""
            emit("error", reason=error, stage=exc.stage)
        turn.stt_final_ns = _now()
        turn.stage_ms["stt"] = (turn.stt_final_ns - t0) / 1e6
        text = heard if text is None else f"{text} {heard}"
    return (text or "").strip(), error


async def hear_overlap(audio: np.ndarray, onset_ns: int, end_ns: int, *, session_id: str, stt: Any,
                       language: str, sample_rate: int, emit: Callable[..., None]) -> tuple[TurnRecord, str]:
    """Transcribe words spoken over the customer, as a turn (numbered later, if it becomes one)."""
    eot = _now()
    turn = TurnRecord(session_id=session_id, turn=0, user_speech_start_ns=onset_ns)
    turn.user_speech_end_ns, turn.eot_decision_ns = end_ns, eot
    try:
        text = await stt.transcribe(audio, sample_rate, language)
    except ProviderError as exc:
        emit("error", reason=str(exc), stage=exc.stage)
        text = ""
    turn.stt_final_ns = _now()
    turn.stage_ms["stt"] = (turn.stt_final_ns - eot) / 1e6
    return turn, text.strip()
