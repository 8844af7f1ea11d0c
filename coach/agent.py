"""The AI virtual customer: VAD -> STT -> LLM -> clause split -> TTS -> AudioOutput, with barge-in.

One ``CustomerAgent`` per practice session. ``feed`` is called from the inbound audio pump with
16 kHz mono int16 and never blocks: VAD runs inline (~80 µs per 32 ms chunk, see coach/vad.py)
and everything slow (providers, smart-turn) runs in tasks the agent owns and cancels on ``close``.

Every turn-taking decision is made by coach/turn_policy.py (``step(state, event)``); this class
turns VAD edges, provider results and playout into policy events and performs the effects.

Reply audio of one reply lives on a "timeline" (samples at the TTS rate, clause after clause).
A barge-in flushes the output and remembers how far the timeline was played; a false
interruption resumes from exactly there under a new utterance id (the flushed one is dead).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Coroutine

import numpy as np

from coach.contracts import (
    AudioOutput,
    ChatMessage,
    InterruptionRecord,
    ProviderError,
    SessionEvents,
    TurnRecord,
)
from coach.settings import CoachSettings
from coach.text import ClauseSplitter, played_text, split_all
from coach import turn_policy as tp
from coach.context import ChatContext
from coach.settings import TurnTakingSettings
from coach.smart_turn import SmartTurn
from coach.turns import TurnState, TurnStateMachine
from coach.vad import SileroVad, SpeechEnd, SpeechPause, SpeechResume, SpeechStart, VadSegmenter

log = logging.getLogger(__name__)

_now = time.perf_counter_ns
STT_RATE = 16_000


@dataclass
class _Barge:
    onset_ns: int
    decision_ns: int
    flushed_ms: float
    last_frame_ns: int | None


@dataclass
class _Speculation:
    """STT (+ smart-turn) of the utterance so far, started at a pause."""

    seq: int
    task: asyncio.Task  # -> (text, p_complete | None, error | None)
    started_ns: int
    finished_ns: int | None = None


@dataclass
class _Reply:
    rid: str
    turn: TurnRecord | None  # None: greeting
    sample_rate: int
    clauses: list[str] = field(default_factory=list)
    audio: dict[int, bytes] = field(default_factory=dict)  # complete clause audio (for resume)
    partial: tuple[int, int] = (-1, 0)  # (clause index, bytes synthesized so far)
    llm_done: bool = False
    new_clause: asyncio.Event = field(default_factory=asyncio.Event)
    uids: list[str] = field(default_factory=list)
    base_samples: int = 0  # timeline position where the current uid starts
    llm_task: asyncio.Task | None = None
    speak_task: asyncio.Task | None = None
    barge: _Barge | None = None
    pushed_any: bool = False
    # reply handle: set by the output track's playout, never polled
    played: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    interrupted: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def add_clause(self, text: str) -> None:
        self.clauses.append(text)
        self.new_clause.set()

    def close_text(self) -> None:
        self.llm_done = True
        self.new_clause.set()

    def clause_samples(self, i: int) -> int:
        if i in self.audio:
            return len(self.audio[i]) // 2
        return self.partial[1] // 2 if self.partial[0] == i else 0

    def segments(self) -> list[tuple[str, float]]:
        out = []
        for i, text in enumerate(self.clauses):
            n = self.clause_samples(i)
            if n <= 0:
                break
            out.append((text, n * 1000.0 / self.sample_rate))
        return out


class CustomerAgent:
    MAX_TTS_AHEAD_MS = 1500.0  # don't synthesize the next clause while this much is queued

    def __init__(
        self,
        *,
        session_id: str,
        scenario: Any,
        providers: Any,
        output: AudioOutput,
        events: SessionEvents,
        settings: CoachSettings,
        vad: SileroVad | None = None,
    ):
        self.session_id = session_id
        self.scenario = scenario
        self.providers = providers
        self.output = output
        self.events = events
        self.settings = settings
        self.language: str = getattr(scenario, "language", "en")
        self.mode: str = getattr(scenario, "interruption_mode", "interrupt") or "interrupt"
        self.keywords = [k.lower() for k in (getattr(scenario, "interruption_keywords", None) or [])]
        self._policy_mode = tp.interrupt_mode(self.mode, self.keywords)
        overrides = getattr(scenario, "turn_taking", None) or {}
        self.turn_taking = settings.turn_taking.model_copy(update=overrides) if overrides else settings.turn_taking
        tt: TurnTakingSettings = self.turn_taking
        self._smart = SmartTurn.shared() if tt.smart_turn else None
        # Without the model: silence-only endpointing (VAD silence_ms), speculation still hides STT.
        end_ms = tt.max_silence_ms if self._smart is not None else settings.vad.silence_ms
        self._threshold = tt.threshold.get(self.language, tt.threshold.get("en", 0.5))
        self._seg = VadSegmenter(settings.vad, STT_RATE, vad=vad, pause_ms=min(tt.pause_ms, end_ms - 32),
                                 silence_ms=end_ms)
        self._sm = TurnStateMachine(self._on_state)
        self._ps = tp.PolicyState()
        self._turns: list[TurnRecord] = []
        self._interruptions: list[InterruptionRecord] = []
        self._transcript: list[dict[str, Any]] = []
        self._context = ChatContext(settings.providers.llm_context_tokens,
                                    settings.providers.llm_summary_chars, self.language)
        self._tasks: set[asyncio.Task] = set()
        self._turn_no = 0
        self._reply_no = 0
        self._reply: _Reply | None = None
        self._turn_task: asyncio.Task | None = None
        self._thinking_turn: TurnRecord | None = None
        self._thinking_audio: np.ndarray | None = None
        self._carry: tuple[TurnRecord, str | None, np.ndarray | None] | None = None
        self._pending: list[tuple[TurnRecord, str]] = []  # append mode: turns after the reply
        self._end: SpeechEnd | None = None  # the segmenter's utterance end being handled
        self._onset_ns: int | None = None  # onset of the current trainee utterance
        self._spec: _Speculation | None = None
        self._spec_counts = [0, 0]  # (started, wasted) for the utterance being built
        self._overlap_heard: tuple[TurnRecord, str] | None = None
        self.stats = {"speculative_calls": 0, "wasted_calls": 0, "false_interruptions": 0}
        self._closed = False
        self._started = False

    # ---- public API --------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._sm.state.value

    @property
    def turns(self) -> list[TurnRecord]:
        return self._turns

    @property
    def interruptions(self) -> list[InterruptionRecord]:
        return self._interruptions

    @property
    def transcript(self) -> list[dict[str, Any]]:
        return self._transcript

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._emit("state", state=self.state)
        if self.settings.greet and getattr(self.scenario, "greeting", None):
            self._sm.to(TurnState.THINKING)
            self._ps = tp.PolicyState(phase=TurnState.THINKING)
            reply = self._new_reply(None)
            for c in split_all(self.scenario.greeting, self.language):
                reply.add_clause(c)
            reply.close_text()
            self._start_speaking(reply)

    def feed(self, pcm16_16k: np.ndarray, t_ns: int) -> None:
        """Trainee audio (mono int16, 16 kHz); ``t_ns`` = arrival of its last sample."""
        if self._closed:
            return
        try:
            for ev in self._seg.feed(pcm16_16k, t_ns):
                if isinstance(ev, SpeechStart):
                    self._onset_ns = ev.onset_ns
                    self._emit("vad", speaker="trainee", edge="start", speech_start_ns=ev.onset_ns,
                               speech_end_ns=None)
                    self._dispatch(tp.SpeechStart(echo_guarded=self._echo_guarded()))
                elif isinstance(ev, SpeechPause):
                    self._dispatch(tp.Pause(ev.duration_ms))
                elif isinstance(ev, SpeechResume):
                    self._dispatch(tp.Resume())
                else:
                    self._end = ev
                    self._emit_vad_end(ev)
                    self._dispatch(tp.SpeechEnd(ev.duration_ms))
                    self._end = None
        except Exception as exc:  # a bug here must not kill the inbound pump
            log.exception("agent feed failed")
            self._emit("error", reason=f"internal: {exc}", stage="agent")

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # ---- policy -----------------------------------------------------------------------
    def _dispatch(self, event: tp.Event) -> None:
        self._ps, effects = tp.step(self._ps, event, self._policy_mode,
                                    barge_min_ms=self.settings.barge_in.min_speech_ms)
        for fx in effects:
            self._perform(fx)

    def _perform(self, fx: tp.Effect) -> None:
        if isinstance(fx, tp.SetState):
            if self._sm.state != fx.state:
                self._sm.to(fx.state)
        elif isinstance(fx, tp.Speculate):
            self._speculate(fx.seq)
        elif isinstance(fx, tp.DropSpeculation):
            self._drop_speculation()
        elif isinstance(fx, tp.CommitTurn):
            self._commit_turn()
        elif isinstance(fx, tp.MergeIntoTurn):
            self._merge_thinking()
        elif isinstance(fx, tp.StopOutput):
            self._stop_output()
        elif isinstance(fx, tp.ResolveOverlap):
            audio = self._end.audio if self._end is not None else self._seg.current_audio()
            end_ns = self._end.end_ns if self._end is not None else _now()
            self._spawn(self._resolve_overlap(audio, self._onset_ns or end_ns, end_ns), "overlap")
        elif isinstance(fx, tp.ResumeOutput):
            if self._reply is not None:
                self._resume(self._reply, record=fx.false_interruption)
        elif isinstance(fx, tp.CutReply):
            self._cut_reply(start_turn=fx.start_turn)
        elif isinstance(fx, tp.AdoptOverlap):
            self._adopt_overlap(fx.seq)
        elif isinstance(fx, tp.QueueTurn):
            if self._overlap_heard is not None:
                self._pending.append(self._overlap_heard)
                self._overlap_heard = None
        elif isinstance(fx, tp.StartQueuedTurn):
            if self._pending:
                turn, text = self._pending.pop(0)
                turn.turn = self._next_turn_no()
                self._start_turn(turn, None, text)
        else:  # pragma: no cover - every effect is handled above
            raise TypeError(f"unhandled effect {fx!r}")

    # ---- events -----------------------------------------------------------------------
    def _emit(self, type_: str, **fields: Any) -> None:
        event = {"type": type_, "t_ns": _now(), **fields}
        try:
            self.events.emit(event)
        except Exception:  # the sink must not break the pipeline
            log.exception("event sink failed")

    def _emit_vad_end(self, ev: SpeechEnd) -> None:
        self._emit("vad", speaker="trainee", edge="end", speech_start_ns=ev.onset_ns, speech_end_ns=ev.end_ns)

    def _on_state(self, old: TurnState, new: TurnState, t_ns: int) -> None:
        self._emit("state", state=new.value, previous=old.value)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.session_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("agent task %s failed: %r", task.get_name(), exc)
            self._emit("error", reason=f"internal: {exc}", stage="agent")

    # ---- endpointing: speculation at the pause ------------------------------------------
    def _speculate(self, seq: int) -> None:
        self._drop_speculation(wasted=False)
        audio = self._seg.current_audio()
        task = self._spawn(self._judge(audio), f"speculate{seq}")
        self._spec = _Speculation(seq, task, _now())
        self._spec_counts[0] += 1
        self.stats["speculative_calls"] += 1
        task.add_done_callback(lambda t, spec=self._spec: self._speculated(spec, t))

    async def _judge(self, audio: np.ndarray) -> tuple[str, float | None, str | None]:
        """Transcript + smart-turn P(complete) of the utterance so far (run side by side)."""
        smart = self._smart
        p_future = (asyncio.get_running_loop().run_in_executor(_smart_executor(), smart.probability, audio)
                    if smart is not None else None)
        try:
            text, error = await self.providers.stt.transcribe(audio, STT_RATE, self.language), None
        except ProviderError as exc:
            text, error = "", str(exc)
        p = None
        if p_future is not None and tp.text_verdict(text, self.language) is not tp.Verdict.UNKNOWN:
            p_future.cancel()  # the words decide; don't wait for the model
            p_future = None
        if p_future is not None:
            try:
                p = await p_future
            except Exception:  # noqa: BLE001 - a model failure degrades to text + silence
                log.exception("smart-turn failed")
        return text.strip(), p, error

    def _speculated(self, spec: _Speculation, task: asyncio.Task) -> None:
        spec.finished_ns = _now()
        if task.cancelled() or task.exception() is not None or spec is not self._spec or self._closed:
            return
        text, p, error = task.result()
        if text and error is None:
            self._emit("interim_transcript", speaker="trainee", text=text, final=False,
                       p_complete=None if p is None else round(p, 3))
        complete = (error is None and bool(text) and self._smart is not None
                    and tp.turn_complete(text, p, self.language, self._threshold))
        self._dispatch(tp.Speculated(spec.seq, complete))

    def _drop_speculation(self, wasted: bool = True) -> None:
        spec, self._spec = self._spec, None
        if spec is None:
            return
        if not spec.task.done():
            spec.task.cancel()  # the decode already running in the whisper thread finishes unseen
        if wasted:
            self._spec_counts[1] += 1
            self.stats["wasted_calls"] += 1

    def _commit_turn(self) -> None:
        """End the user turn: reuse the speculative transcript when the trainee said nothing since."""
        eot = _now()
        end = self._end or self._seg.cut(eot)
        if end is None:
            return
        if self._end is None:
            self._emit_vad_end(end)
        turn, text, audio = self._take_carry(end)
        turn.user_speech_end_ns = end.end_ns
        turn.eot_decision_ns = eot
        turn.speculative_calls, turn.wasted_calls = self._spec_counts
        self._spec_counts = [0, 0]
        spec, self._spec = self._spec, None
        self._start_turn(turn, audio, text, spec)

    def _take_carry(self, ev: SpeechEnd) -> tuple[TurnRecord, str | None, np.ndarray]:
        if self._carry is None:
            return self._new_turn(ev.onset_ns), None, ev.audio
        turn, text, audio = self._carry
        self._carry = None
        # the cancelled attempt's provider timings don't describe the merged turn
        turn.llm_first_token_ns = turn.tts_first_audio_ns = None
        turn.stage_ms.clear()
        turn.user_text = ""
        self._drop_speculation(wasted=False)  # it heard only the new part: transcribe together
        if text is None and audio is not None:  # STT hadn't finished: transcribe both together
            return turn, None, np.concatenate([audio, ev.audio])
        return turn, text, ev.audio  # text prefix; the new audio still needs STT

    def _new_turn(self, onset_ns: int | None) -> TurnRecord:
        self._turn_no += 1
        return TurnRecord(session_id=self.session_id, turn=self._turn_no, user_speech_start_ns=onset_ns)

    def _merge_thinking(self) -> None:
        """Speech while thinking: drop the pending reply, keep what the trainee said so far."""
        turn = self._thinking_turn
        self._cancel_reply()
        if self._turn_task is not None:
            self._turn_task.cancel()
            self._turn_task = None
        if turn is not None:
            # STT done: carry its text; not done: carry the audio to transcribe with the rest
            text = turn.user_text or None
            self._carry = (turn, text, None if text else self._thinking_audio)
            self._thinking_turn = None

    # ---- barge-in -----------------------------------------------------------------------
    def _stop_output(self) -> None:
        """Stop the customer's audio now; the timeline position is kept for a resume."""
        reply = self._reply
        if reply is None:
            return
        decision = _now()
        if reply.speak_task is not None:
            reply.speak_task.cancel()  # stop TTS; the LLM keeps writing the text
            reply.speak_task = None
        flushed = self.output.flush()
        uid = reply.uids[-1] if reply.uids else None
        po = self.output.playout(uid) if uid else None
        sent = int((po.sent_ms if po else 0.0) * reply.sample_rate / 1000)
        reply.base_samples += sent  # resume point on the reply timeline
        reply.barge = _Barge(self._onset_ns or decision, decision, flushed, self._last_frame_ns(reply))
        timeout = self.settings.barge_in.false_interruption_timeout_ms / 1000
        self._spawn(self._barge_timer(reply, timeout), "barge-timer")

    def _echo_guarded(self) -> bool:
        guard = self.settings.barge_in.echo_guard_ms
        if not guard or self._reply is None or self._sm.state != TurnState.SPEAKING:
            return False
        first = self._first_frame_ns(self._reply)
        return first is None or (_now() - first) / 1e6 < guard

    async def _barge_timer(self, reply: _Reply, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if reply is self._reply and reply.barge is not None and not self._seg.in_speech:
            self._dispatch(tp.BargeTimeout())  # nothing came of it: the policy resumes

    async def _resolve_overlap(self, audio: np.ndarray, onset_ns: int, end_ns: int) -> None:
        """Transcribe words spoken over the customer; the interrupt mode decides what they are."""
        eot = _now()
        turn = TurnRecord(session_id=self.session_id, turn=0, user_speech_start_ns=onset_ns)  # numbered if used
        turn.user_speech_end_ns, turn.eot_decision_ns = end_ns, eot
        try:
            text = await self.providers.stt.transcribe(audio, STT_RATE, self.language)
        except ProviderError as exc:
            self._emit("error", reason=str(exc), stage=exc.stage)
            text = ""
        turn.stt_final_ns = _now()
        turn.stage_ms["stt"] = (turn.stt_final_ns - eot) / 1e6
        if self._closed:
            return
        text = text.strip()
        decision = self._policy_mode.on_text(text, self.language)
        if decision in (tp.Overlap.INTERRUPT, tp.Overlap.APPEND):
            self._overlap_heard = (turn, text)
        self._dispatch(tp.OverlapHeard(decision))

    def _cut_reply(self, *, start_turn: bool) -> None:
        reply = self._reply
        if reply is not None:
            if reply.llm_task is not None:
                reply.llm_task.cancel()
            self._record_interruption(reply, false=False)
            _set(reply.interrupted)
            self._finish_reply(reply, cut=True)
        if start_turn and self._overlap_heard is not None:
            (turn, text), self._overlap_heard = self._overlap_heard, None
            turn.turn = self._next_turn_no()
            self._start_turn(turn, None, text)

    def _adopt_overlap(self, seq: int) -> None:
        """The interruption's words so far become the speculation of the current pause."""
        heard, self._overlap_heard = self._overlap_heard, None
        text = heard[1] if heard else ""

        async def known() -> tuple[str, float | None, str | None]:
            return text, None, None

        self._drop_speculation(wasted=False)
        task = self._spawn(known(), f"adopt{seq}")
        self._spec = _Speculation(seq, task, _now())
        task.add_done_callback(lambda t, spec=self._spec: self._speculated(spec, t))

    def _next_turn_no(self) -> int:
        self._turn_no += 1
        return self._turn_no

    def _resume(self, reply: _Reply, *, record: bool = True) -> None:
        if record:
            self.stats["false_interruptions"] += 1
            self._record_interruption(reply, false=True)
        reply.barge = None
        reply.speak_task = self._spawn(self._speak(reply), "speak")

    def _record_interruption(self, reply: _Reply, *, false: bool) -> None:
        b = reply.barge
        if b is None:
            return
        rec = InterruptionRecord(
            session_id=self.session_id,
            turn=reply.turn.turn if reply.turn else 0,
            user_onset_ns=b.onset_ns,
            decision_ns=b.decision_ns,
            last_reply_frame_ns=b.last_frame_ns,
            flushed_ms=b.flushed_ms,
            planned_text="".join(reply.clauses).strip(),
            played_text=self._played(reply),
            mode=self.mode,
            false_interruption=false,
            resumed=false,
        )
        self._interruptions.append(rec)
        self._emit("interruption", **rec.as_dict() | {"type": "interruption"})

    # ---- user turn ----------------------------------------------------------------------
    def _start_turn(self, turn: TurnRecord, audio: np.ndarray | None, text: str | None,
                    spec: _Speculation | None = None) -> None:
        self._thinking_turn = turn
        self._turn_task = self._spawn(self._run_turn(turn, audio, text, spec), f"turn{turn.turn}")

    async def _run_turn(self, turn: TurnRecord, audio: np.ndarray | None, text: str | None,
                        spec: _Speculation | None = None) -> None:
        error: str | None = None
        if spec is not None and text is None:
            # the speculative transcript heard everything said (nothing since the pause)
            self._thinking_audio = audio
            heard, _p, error = await spec.task
            if error is not None:
                self._emit("error", reason=error, stage="stt")
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
            self._thinking_audio = audio
            t0 = _now()
            try:
                heard = await self.providers.stt.transcribe(audio, STT_RATE, self.language)
            except ProviderError as exc:
                error, heard = str(exc), ""
                self._emit("error", reason=error, stage=exc.stage)
            turn.stt_final_ns = _now()
            turn.stage_ms["stt"] = (turn.stt_final_ns - t0) / 1e6
            text = heard if text is None else f"{text} {heard}"
        text = (text or "").strip()
        if error is None and not text:
            self._thinking_turn = None
            self._turn_no -= 1 if turn.turn == self._turn_no else 0
            self._dispatch(tp.TurnEmpty())  # nothing was said (noise)
            return
        turn.user_text = text
        if text:
            entry = {"speaker": "trainee", "text": text, "final": True, "turn": turn.turn,
                     "start_ns": turn.user_speech_start_ns, "end_ns": turn.user_speech_end_ns}
            self._transcript.append(entry)
            self._emit("transcript", **entry)
        reply = self._new_reply(turn)
        if error is not None:
            turn.error = error
            self._fallback(reply)
        else:
            messages = self._messages() + [ChatMessage("user", text)]
            reply.llm_task = self._spawn(self._stream_llm(reply, messages), "llm")
        self._start_speaking(reply)

    def _messages(self) -> list[ChatMessage]:
        from coach.scenarios import system_prompt  # lazy: scenarios load YAML tooling

        return self._context.messages(system_prompt(self.scenario))

    def _fallback(self, reply: _Reply) -> None:
        line = self.settings.providers.fallback_line.get(self.language) or next(
            iter(self.settings.providers.fallback_line.values()), "Sorry?"
        )
        for c in split_all(line, self.language):
            reply.add_clause(c)
        reply.close_text()

    async def _stream_llm(self, reply: _Reply, messages: list[ChatMessage]) -> None:
        turn = reply.turn
        assert turn is not None
        splitter = ClauseSplitter(self.language)
        t0 = _now()
        deadline_s = self.settings.providers.llm_reply_deadline_s
        try:
            try:
                async with asyncio.timeout(deadline_s):
                    async for delta in self.providers.llm.stream_reply(messages, self.language):
                        if not delta:
                            continue
                        if turn.llm_first_token_ns is None:
                            turn.llm_first_token_ns = _now()
                            turn.stage_ms["llm_first_token"] = (turn.llm_first_token_ns - t0) / 1e6
                        for c in splitter.push(delta):
                            self._add_llm_clause(reply, c, t0)
            except TimeoutError:
                raise ProviderError("llm", f"reply not finished within {deadline_s:g} s") from None
            for c in splitter.flush():
                self._add_llm_clause(reply, c, t0)
            turn.stage_ms["llm_total"] = (_now() - t0) / 1e6
        except ProviderError as exc:
            turn.error = str(exc)
            self._emit("error", reason=str(exc), stage=exc.stage, turn=turn.turn)
            if not reply.clauses:
                self._fallback(reply)
                return
        reply.close_text()

    def _add_llm_clause(self, reply: _Reply, clause: str, t0: int) -> None:
        if not reply.clauses and reply.turn is not None:
            reply.turn.stage_ms["llm"] = (_now() - t0) / 1e6  # to the first speakable clause
        reply.add_clause(clause)

    # ---- speaking -----------------------------------------------------------------------
    def _new_reply(self, turn: TurnRecord | None) -> _Reply:
        self._reply_no += 1
        reply = _Reply(f"{self.session_id}-r{self._reply_no}", turn, int(self.providers.tts.sample_rate))
        self._reply = reply
        return reply

    def _start_speaking(self, reply: _Reply) -> None:
        reply.speak_task = self._spawn(self._speak(reply), "speak")

    async def _speak(self, reply: _Reply) -> None:
        """Play the reply timeline from ``reply.base_samples``; TTS clause by clause, pipelined."""
        uid = f"{reply.rid}-{len(reply.uids)}"
        reply.uids.append(uid)
        skip = reply.base_samples * 2  # bytes of the timeline already heard
        pos = 0  # timeline byte offset at the start of the current clause
        i = 0
        tts = self.providers.tts
        voice = getattr(self.scenario, "voice", None)
        while True:
            while i >= len(reply.clauses) and not reply.llm_done:
                reply.new_clause.clear()
                await reply.new_clause.wait()
            if i >= len(reply.clauses):
                break
            if i in reply.audio:
                data = reply.audio[i]
                self._push(reply, uid, data, pos, skip)
                pos += len(data)
                i += 1
                continue
            while i > 0 and self.output.queued_ms() > self.MAX_TTS_AHEAD_MS:
                await asyncio.sleep(0.02)  # bounded pipelining: stay ~1.5 s ahead of playout
            text = reply.clauses[i].strip()
            buf = bytearray()
            t0 = _now()
            try:
                if text:
                    async for chunk in tts.synthesize(text, self.language, voice):
                        if not chunk:
                            continue
                        turn = reply.turn
                        if turn is not None and turn.tts_first_audio_ns is None:
                            turn.tts_first_audio_ns = _now()
                            turn.stage_ms["tts"] = (turn.tts_first_audio_ns - t0) / 1e6
                        self._push(reply, uid, chunk, pos + len(buf), skip)
                        buf += chunk
                        reply.partial = (i, len(buf))
            except ProviderError as exc:
                if reply.turn is not None:
                    reply.turn.error = reply.turn.error or str(exc)
                self._emit("error", reason=str(exc), stage=exc.stage)
                if reply.llm_task is not None:
                    reply.llm_task.cancel()
                break  # without TTS there is nothing to say; end the reply
            reply.audio[i] = bytes(buf)
            pos += len(buf)
            i += 1
        self.output.end(uid)
        await self.output.wait_done(uid)  # set by the track when the last frame left
        reply.speak_task = None
        _set(reply.done)
        self._finish_reply(reply, cut=False)
        self._dispatch(tp.ReplyDone(trainee_talking=self._seg.in_speech))

    def _push(self, reply: _Reply, uid: str, data: bytes, pos: int, skip: int) -> None:
        """Push the part of ``data`` (timeline bytes [pos, pos+len)) not heard yet."""
        if pos + len(data) <= skip:
            return
        if pos < skip:
            data = data[skip - pos :]
        if not data:
            return
        self.output.push(uid, bytes(data), reply.sample_rate)
        if not reply.pushed_any:
            reply.pushed_any = True
            _set(reply.played)
        if self._sm.state == TurnState.THINKING:
            self._thinking_turn = None
            self._dispatch(tp.ReplyAudible())

    def _played(self, reply: _Reply) -> str:
        played_ms = reply.base_samples * 1000.0 / reply.sample_rate
        if reply.barge is None and reply.uids:
            played_ms += self.output.playout(reply.uids[-1]).sent_ms
        return played_text(reply.segments(), played_ms, self.language)

    def _first_frame_ns(self, reply: _Reply) -> int | None:
        for uid in reply.uids:
            t = self.output.playout(uid).first_frame_ns
            if t is not None:
                return t
        return None

    def _last_frame_ns(self, reply: _Reply) -> int | None:
        for uid in reversed(reply.uids):
            t = self.output.playout(uid).last_frame_ns
            if t is not None:
                return t
        return None

    def _finish_reply(self, reply: _Reply, *, cut: bool) -> None:
        planned = "".join(reply.clauses).strip()
        played = self._played(reply)
        _set(reply.done)
        if reply is self._reply:
            self._reply = None
        turn = reply.turn
        if turn is not None:
            turn.reply_planned_text, turn.reply_played_text = planned, played
            turn.interrupted = cut
            turn.first_reply_frame_ns = self._first_frame_ns(reply)
            turn.reply_done_ns = self._last_frame_ns(reply)
            self._turns.append(turn)
            self._emit("turn", **turn.as_dict())
        if planned:
            entry = {"speaker": "customer", "text": played, "planned": planned, "final": True,
                     "turn": turn.turn if turn else 0, "interrupted": cut,
                     "start_ns": self._first_frame_ns(reply), "end_ns": self._last_frame_ns(reply)}
            self._transcript.append(entry)
            self._emit("transcript", **entry)
        if turn is not None and turn.user_text:
            self._context.add(ChatMessage("user", turn.user_text))
        if played:
            self._context.add(ChatMessage("assistant", played))
        self._context.compact()  # after the reply: off the trainee-to-customer hot path

    def _cancel_reply(self) -> None:
        reply, self._reply = self._reply, None
        if reply is None:
            return
        for t in (reply.llm_task, reply.speak_task):
            if t is not None:
                t.cancel()
        if reply.pushed_any:
            self.output.flush()


def _set(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


_smart_pool: Any = None


def _smart_executor() -> Any:
    """One thread for smart-turn inference in this process (~25-100 ms a call, off the loop)."""
    global _smart_pool
    if _smart_pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _smart_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
    return _smart_pool
