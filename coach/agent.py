"""The AI virtual customer: VAD -> STT -> LLM -> clause split -> TTS -> AudioOutput, with barge-in.

One ``CustomerAgent`` per practice session. ``feed`` is called from the inbound audio pump with
16 kHz mono int16 and never blocks: VAD runs inline (~80 µs per 32 ms chunk, see coach/vad.py)
and everything slow (providers, smart-turn) runs in tasks the agent owns and cancels on ``close``.

Every turn-taking decision is made by coach/turn_policy.py (``step(state, event)``); this class
turns VAD edges, provider results and playout into policy events and performs the effects.
Its collaborators: coach/speculation.py (STT + smart-turn at a pause), coach/llm_reply.py (the
reply's text), coach/reply.py (the reply timeline and its playout, resumable after a false
interruption) and coach/conversation.py (turns, transcript, interruptions, LLM context).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Coroutine

import numpy as np

from coach import turn_policy as tp
from coach.context import ChatContext
from coach.contracts import AudioOutput, ChatMessage, InterruptionRecord, SessionEvents, TurnRecord
from coach.conversation import ConversationLog
from coach.llm_reply import stream_llm_reply, write_fallback, write_line
from coach.reply import Reply, ReplySpeaker, resolve
from coach.settings import CoachSettings, TurnTakingSettings
from coach.smart_turn import SmartTurn
from coach.speculation import Judgement, Speculation, Speculator, already_heard, hear_overlap, hear_turn, judge
from coach.turns import TurnState, TurnStateMachine
from coach.user_turns import UserTurns
from coach.vad import ChunkBatcher, SileroVad, SpeechEnd, SpeechPause, SpeechResume, SpeechStart, VadEvent, VadSegmenter

log = logging.getLogger(__name__)

_now = time.perf_counter_ns
STT_RATE = 16_000


class CustomerAgent:
    MAX_TTS_AHEAD_MS = ReplySpeaker.MAX_TTS_AHEAD_MS  # don't synthesize the next clause while this much is queued

    def __init__(self, *, session_id: str, scenario: Any, providers: Any, output: AudioOutput,
                 events: SessionEvents, settings: CoachSettings, vad: SileroVad | ChunkBatcher | None = None):
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
                                 silence_ms=end_ms, on_event=self._on_vad)
        self._sm = TurnStateMachine(self._on_state)
        self._ps = tp.PolicyState()
        self._log = ConversationLog(ChatContext(settings.providers.llm_context_tokens,
                                                settings.providers.llm_summary_chars, self.language), self._emit)
        self._speaker = ReplySpeaker(output=output, providers=providers, scenario=scenario, language=self.language,
                                     emit=self._emit, on_audio=self._on_reply_audio)
        self._tasks: set[asyncio.Task] = set()
        self._user = UserTurns(session_id)
        self._reply_no = 0
        self._reply: Reply | None = None
        self._turn_task: asyncio.Task | None = None
        self._end: SpeechEnd | None = None  # the segmenter's utterance end being handled
        self._onset_ns: int | None = None  # onset of the current trainee utterance
        self.stats = {"speculative_calls": 0, "wasted_calls": 0, "speculative_llm_calls": 0,
                      "wasted_llm_calls": 0, "false_interruptions": 0}
        self._spec = Speculator(spawn=self._spawn, on_result=self._speculated, stats=self.stats)
        self._closed = False
        self._started = False

    # ---- public API --------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._sm.state.value

    @property
    def turns(self) -> list[TurnRecord]:
        return self._log.turns

    @property
    def interruptions(self) -> list[InterruptionRecord]:
        return self._log.interruptions

    @property
    def transcript(self) -> list[dict[str, Any]]:
        return self._log.transcript

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._emit("state", state=self.state)
        if self.settings.greet and getattr(self.scenario, "greeting", None):
            self._sm.to(TurnState.THINKING)
            self._ps = tp.PolicyState(phase=TurnState.THINKING)
            reply = self._new_reply(None)
            write_line(reply, self.scenario.greeting, self.language)
            self._start_speaking(reply)

    def feed(self, pcm16_16k: np.ndarray, t_ns: int) -> None:
        """Trainee audio (mono int16, 16 kHz); ``t_ns`` = arrival of its last sample."""
        if not self._closed:
            self._seg.push(pcm16_16k, t_ns)  # events come back through _on_vad

    def _on_vad(self, ev: VadEvent) -> None:  # none after close(): the segmenter drops them
        try:
            if isinstance(ev, SpeechStart):
                self._onset_ns = ev.onset_ns
                self._emit("vad", speaker="trainee", edge="start", speech_start_ns=ev.onset_ns, speech_end_ns=None)
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
        self._seg.close()
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
            self._spec.drop()
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
            self._user.queue_heard()
        elif isinstance(fx, tp.StartQueuedTurn):
            if (queued := self._user.next_queued()) is not None:
                self._start_turn(*self._user.numbered(queued))
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
        work = judge(self._seg.current_audio(), stt=self.providers.stt, smart=self._smart,
                     language=self.language, sample_rate=STT_RATE)
        self._spec.start(seq, work, f"speculate{seq}")

    def _speculated(self, spec: Speculation, judgement: Judgement) -> None:
        if self._closed:
            return
        text, p, error = judgement
        if text and error is None:
            self._emit("interim_transcript", speaker="trainee", text=text, final=False,
                       p_complete=None if p is None else round(p, 3))
        complete = (error is None and bool(text) and self._smart is not None
                    and tp.turn_complete(text, p, self.language, self._threshold))
        if (not complete and text and error is None and self.turn_taking.speculative_llm
                and tp.text_verdict(text, self.language) is tp.Verdict.UNKNOWN):  # "...made for": talks on
            self._spec.prefetch(spec, self.providers.llm, self._messages() + [ChatMessage("user", text)],
                                self.language)
        self._dispatch(tp.Speculated(spec.seq, complete))

    def _commit_turn(self) -> None:
        """End the user turn: reuse the speculative transcript when the trainee said nothing since."""
        eot = _now()
        end = self._end or self._seg.cut(eot)
        if end is None:
            return
        if self._end is None:
            self._emit_vad_end(end)
        if self._user.carrying:
            self._spec.drop(wasted=False)  # it heard only the new part: transcribe together
        turn, text, audio = self._user.take(end)
        turn.user_speech_end_ns = end.end_ns
        turn.eot_decision_ns = eot
        spec, n = self._spec.take()
        turn.speculative_calls, turn.wasted_calls = n.stt, n.stt_wasted
        turn.speculative_llm_calls, turn.wasted_llm_calls = n.llm, n.llm_wasted
        self._start_turn(turn, text, audio, spec)

    def _merge_thinking(self) -> None:
        """Speech while thinking: drop the pending reply, keep what the trainee said so far."""
        self._cancel_reply()
        if self._turn_task is not None:
            self._turn_task.cancel()
            self._turn_task = None
        self._user.carry_thinking()

    # ---- barge-in -----------------------------------------------------------------------
    def _stop_output(self) -> None:
        """Stop the customer's audio now; a false interruption resumes it where it stopped."""
        reply = self._reply
        if reply is None:
            return
        self._speaker.stop(reply, self._onset_ns)
        timeout = self.settings.barge_in.false_interruption_timeout_ms / 1000
        self._spawn(self._barge_timer(reply, timeout), "barge-timer")

    def _echo_guarded(self) -> bool:
        guard = self.settings.barge_in.echo_guard_ms
        if not guard or self._reply is None or self._sm.state != TurnState.SPEAKING:
            return False
        return self._speaker.just_started(self._reply, guard)

    async def _barge_timer(self, reply: Reply, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if reply is self._reply and reply.barge is not None and not self._seg.in_speech:
            self._dispatch(tp.BargeTimeout())  # nothing came of it: the policy resumes

    async def _resolve_overlap(self, audio: np.ndarray, onset_ns: int, end_ns: int) -> None:
        """Transcribe words spoken over the customer; the interrupt mode decides what they are."""
        turn, text = await hear_overlap(audio, onset_ns, end_ns, session_id=self.session_id,
                                        stt=self.providers.stt, language=self.language, sample_rate=STT_RATE,
                                        emit=self._emit)
        if self._closed:
            return
        decision = self._policy_mode.on_text(text, self.language)
        if decision in (tp.Overlap.INTERRUPT, tp.Overlap.APPEND):
            self._user.overlap_heard = (turn, text)
        self._dispatch(tp.OverlapHeard(decision))

    def _cut_reply(self, *, start_turn: bool) -> None:
        reply = self._reply
        if reply is not None:
            if reply.llm_task is not None:
                reply.llm_task.cancel()
            self._record_interruption(reply, false=False)
            resolve(reply.interrupted)
            self._finish_reply(reply, cut=True)
        if start_turn and (heard := self._user.take_heard()) is not None:
            self._start_turn(*self._user.numbered(heard))

    def _adopt_overlap(self, seq: int) -> None:
        """The interruption's words so far become the speculation of the current pause."""
        heard = self._user.take_heard()
        self._spec.start(seq, already_heard(heard[1] if heard else ""), f"adopt{seq}", counted=False)

    def _resume(self, reply: Reply, *, record: bool = True) -> None:
        if record:
            self.stats["false_interruptions"] += 1
            self._record_interruption(reply, false=True)
        reply.barge = None
        self._start_speaking(reply)

    def _record_interruption(self, reply: Reply, *, false: bool) -> None:
        rec = self._speaker.interruption(reply, session_id=self.session_id, mode=self.mode, false=false)
        if rec is not None:
            self._log.interrupted(rec)

    # ---- user turn ----------------------------------------------------------------------
    def _start_turn(self, turn: TurnRecord, text: str | None, audio: np.ndarray | None = None,
                    spec: Speculation | None = None) -> None:
        self._user.thinking = turn
        self._turn_task = self._spawn(self._run_turn(turn, text, audio, spec), f"turn{turn.turn}")

    async def _run_turn(self, turn: TurnRecord, text: str | None, audio: np.ndarray | None,
                        spec: Speculation | None) -> None:
        if (spec is not None and text is None) or audio is not None:
            self._user.thinking_audio = audio  # carried into the next turn if the trainee talks on
        text, error = await hear_turn(turn, audio, text, spec, stt=self.providers.stt, language=self.language,
                                      sample_rate=STT_RATE, emit=self._emit)
        if error is None and not text:
            self._user.forget_empty(turn)
            self._dispatch(tp.TurnEmpty())  # nothing was said (noise)
            return
        turn.user_text = text
        if text:
            self._log.trainee_said(turn, text)
        reply = self._new_reply(turn)
        providers = self.settings.providers
        if error is not None:
            turn.error = error
            write_fallback(reply, providers.fallback_line, self.language)
        else:
            messages = self._messages() + [ChatMessage("user", text)]
            llm = self._spec.reply_llm(spec, messages, self.providers.llm, turn)
            writing = stream_llm_reply(reply, messages, llm=llm, language=self.language,
                                       deadline_s=providers.llm_reply_deadline_s,
                                       fallback_lines=providers.fallback_line, emit=self._emit)
            reply.llm_task = self._spawn(writing, "llm")
        self._start_speaking(reply)

    def _messages(self) -> list[ChatMessage]:
        from coach.scenarios import system_prompt  # lazy: scenarios load YAML tooling

        return self._log.context.messages(system_prompt(self.scenario))

    # ---- speaking -----------------------------------------------------------------------
    def _new_reply(self, turn: TurnRecord | None) -> Reply:
        self._reply_no += 1
        reply = Reply(f"{self.session_id}-r{self._reply_no}", turn, int(self.providers.tts.sample_rate))
        self._reply = reply
        return reply

    def _start_speaking(self, reply: Reply) -> None:
        reply.speak_task = self._spawn(self._speak(reply), "speak")

    async def _speak(self, reply: Reply) -> None:
        """Play the reply (from where a barge-in stopped it); when it is done, tell the policy."""
        await self._speaker.play(reply)
        self._finish_reply(reply, cut=False)
        self._dispatch(tp.ReplyDone(trainee_talking=self._seg.in_speech))

    def _on_reply_audio(self) -> None:
        """Reply audio was pushed: the first push while thinking makes the customer audible."""
        if self._sm.state == TurnState.THINKING:
            self._user.thinking = None
            self._dispatch(tp.ReplyAudible())

    def _finish_reply(self, reply: Reply, *, cut: bool) -> None:
        played = self._speaker.played(reply)
        resolve(reply.done)
        if reply is self._reply:
            self._reply = None
        self._log.reply_finished(reply.turn, planned=reply.planned_text(), played=played, cut=cut,
                                 first_frame_ns=self._speaker.first_frame_ns(reply),
                                 last_frame_ns=self._speaker.last_frame_ns(reply))

    def _cancel_reply(self) -> None:
        reply, self._reply = self._reply, None
        if reply is None:
            return
        for t in (reply.llm_task, reply.speak_task):
            if t is not None:
                t.cancel()
        if reply.pushed_any:
            self.output.flush()
