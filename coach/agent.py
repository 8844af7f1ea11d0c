"""The AI virtual customer: VAD -> STT -> LLM -> clause split -> TTS -> AudioOutput, with barge-in.

One ``CustomerAgent`` per practice session. ``feed`` is called from the inbound audio pump with
16 kHz mono int16 and never blocks: VAD runs inline (~80 µs per 32 ms chunk, see coach/vad.py)
and everything slow (providers) runs in tasks the agent owns and cancels on ``close``.

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
from coach.turns import TurnState, TurnStateMachine
from coach.vad import SileroVad, SpeechEnd, SpeechStart, VadSegmenter

log = logging.getLogger(__name__)

_now = time.perf_counter_ns
STT_RATE = 16_000


@dataclass
class _Barge:
    onset_ns: int
    decision_ns: int
    flushed_ms: float
    last_frame_ns: int | None
    resolving: bool = False


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
        self._seg = VadSegmenter(settings.vad, STT_RATE, vad=vad)
        self._sm = TurnStateMachine(self._on_state)
        self._turns: list[TurnRecord] = []
        self._interruptions: list[InterruptionRecord] = []
        self._transcript: list[dict[str, Any]] = []
        self._history: list[ChatMessage] = []
        self._tasks: set[asyncio.Task] = set()
        self._turn_no = 0
        self._reply_no = 0
        self._reply: _Reply | None = None
        self._turn_task: asyncio.Task | None = None
        self._thinking_turn: TurnRecord | None = None
        self._thinking_audio: np.ndarray | None = None
        self._carry: tuple[TurnRecord, str | None, np.ndarray | None] | None = None
        self._pending: list[tuple[TurnRecord, str]] = []  # append mode: turns after the reply
        self._overlap = False  # current trainee utterance started while the customer spoke
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
                    self._on_speech_start(ev)
                else:
                    self._on_speech_end(ev)
            self._check_barge_in()
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

    # ---- events -----------------------------------------------------------------------
    def _emit(self, type_: str, **fields: Any) -> None:
        event = {"type": type_, "t_ns": _now(), **fields}
        try:
            self.events.emit(event)
        except Exception:  # the sink must not break the pipeline
            log.exception("event sink failed")

    def _on_state(self, old: TurnState, new: TurnState, t_ns: int) -> None:
        self._emit("state", state=new.value, previous=old.value)

    def _to(self, new: TurnState) -> None:
        if self._sm.state != new:
            self._sm.to(new)

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

    # ---- VAD handling -------------------------------------------------------------------
    def _on_speech_start(self, ev: SpeechStart) -> None:
        self._emit("vad", speaker="trainee", edge="start", speech_start_ns=ev.onset_ns, speech_end_ns=None)
        st = self._sm.state
        if st == TurnState.LISTENING:
            self._to(TurnState.USER_SPEAKING)
        elif st == TurnState.THINKING:
            self._merge_thinking()
            self._to(TurnState.USER_SPEAKING)
        elif st == TurnState.SPEAKING:
            self._overlap = True  # barge-in is decided in _check_barge_in once long enough

    def _on_speech_end(self, ev: SpeechEnd) -> None:
        eot = _now()
        self._emit("vad", speaker="trainee", edge="end", speech_start_ns=ev.onset_ns, speech_end_ns=ev.end_ns)
        overlap, self._overlap = self._overlap, False
        st = self._sm.state
        if st == TurnState.INTERRUPTED:
            barge = self._reply.barge if self._reply else None
            if barge is not None and not barge.resolving:
                barge.resolving = True
                self._spawn(self._resolve_barge_in(ev, eot), "resolve")
            return
        if st == TurnState.SPEAKING:
            if self.mode in ("append", "keywords"):
                self._spawn(self._overlap_utterance(ev, eot), "overlap")
            return  # interrupt mode: too short / echo guard; ignore mode: never
        if overlap and ev.duration_ms < self.settings.barge_in.min_speech_ms and st in (
            TurnState.LISTENING, TurnState.USER_SPEAKING
        ):
            self._to(TurnState.LISTENING)
            return  # a click that began during the reply: not a turn
        if st == TurnState.LISTENING:
            self._to(TurnState.USER_SPEAKING)
        if self._sm.state != TurnState.USER_SPEAKING:
            return  # thinking on a queued turn: drop rather than race it
        turn, text, audio = self._take_carry(ev)
        turn.user_speech_end_ns = ev.end_ns
        turn.eot_decision_ns = eot
        self._to(TurnState.THINKING)
        self._start_turn(turn, audio, text)

    def _take_carry(self, ev: SpeechEnd) -> tuple[TurnRecord, str | None, np.ndarray]:
        if self._carry is None:
            return self._new_turn(ev.onset_ns), None, ev.audio
        turn, text, audio = self._carry
        self._carry = None
        # the cancelled attempt's provider timings don't describe the merged turn
        turn.llm_first_token_ns = turn.tts_first_audio_ns = None
        turn.stage_ms.clear()
        turn.user_text = ""
        if text is None and audio is not None:  # STT hadn't finished: transcribe both together
            return turn, None, np.concatenate([audio, ev.audio])
        return turn, text, ev.audio  # text prefix; the new audio still needs STT

    def _new_turn(self, onset_ns: int | None) -> TurnRecord:
        self._turn_no += 1
        return TurnRecord(session_id=self.session_id, turn=self._turn_no, user_speech_start_ns=onset_ns)

    def _merge_thinking(self) -> None:
        """Speech while thinking: drop the pending reply, keep what the trainee said so far."""
        reply, turn = self._reply, self._thinking_turn
        self._cancel_reply()
        if self._turn_task is not None:
            self._turn_task.cancel()
            self._turn_task = None
        if turn is not None:
            # STT done: carry its text; not done: carry the audio to transcribe with the rest
            text = turn.user_text or None
            self._carry = (turn, text, None if text else self._thinking_audio)
            self._thinking_turn = None
        del reply

    def _check_barge_in(self) -> None:
        if self.mode != "interrupt" or self._sm.state != TurnState.SPEAKING or self._reply is None:
            return
        if not self._seg.in_speech or self._seg.speech_ms() < self.settings.barge_in.min_speech_ms:
            return
        guard = self.settings.barge_in.echo_guard_ms
        if guard:
            first = self._first_frame_ns(self._reply)
            if first is None or (_now() - first) / 1e6 < guard:
                return
        self._barge_in(self._seg.onset_ns or _now())

    # ---- barge-in -----------------------------------------------------------------------
    def _barge_in(self, onset_ns: int) -> None:
        reply = self._reply
        assert reply is not None
        decision = _now()
        if reply.speak_task is not None:
            reply.speak_task.cancel()  # stop TTS; the LLM keeps writing the text
            reply.speak_task = None
        flushed = self.output.flush()
        uid = reply.uids[-1] if reply.uids else None
        po = self.output.playout(uid) if uid else None
        sent = int((po.sent_ms if po else 0.0) * reply.sample_rate / 1000)
        reply.base_samples += sent  # resume point on the reply timeline
        reply.barge = _Barge(onset_ns, decision, flushed, self._last_frame_ns(reply))
        self._to(TurnState.INTERRUPTED)
        self._spawn(self._false_interruption_timer(reply), "barge-timer")

    async def _false_interruption_timer(self, reply: _Reply) -> None:
        await asyncio.sleep(self.settings.barge_in.false_interruption_timeout_ms / 1000)
        while reply is self._reply and reply.barge is not None and not reply.barge.resolving:
            if not self._seg.in_speech:  # nothing came of it: resume
                reply.barge.resolving = True
                self._resume(reply)
                return
            await asyncio.sleep(0.05)  # still talking: the utterance end will decide

    async def _resolve_barge_in(self, ev: SpeechEnd, eot: int) -> None:
        reply = self._reply
        if reply is None or reply.barge is None:
            return
        t0 = _now()
        try:
            text = await self.providers.stt.transcribe(ev.audio, STT_RATE, self.language)
        except ProviderError as exc:
            self._emit("error", reason=str(exc), stage=exc.stage)
            text = ""
        stt_done = _now()
        if reply is not self._reply or self._closed:
            return
        if not text.strip():
            self._resume(reply)
            return
        turn = self._new_turn(ev.onset_ns)
        turn.user_speech_end_ns, turn.eot_decision_ns = ev.end_ns, eot
        turn.stt_final_ns, turn.stage_ms["stt"] = stt_done, (stt_done - t0) / 1e6
        self._real_interruption(reply, turn, text)

    def _real_interruption(self, reply: _Reply, turn: TurnRecord, text: str) -> None:
        if reply.llm_task is not None:
            reply.llm_task.cancel()
        self._record_interruption(reply, false=False)
        self._finish_reply(reply, cut=True)
        self._to(TurnState.THINKING)
        self._start_turn(turn, None, text)

    def _resume(self, reply: _Reply) -> None:
        self._record_interruption(reply, false=True)
        reply.barge = None
        self._to(TurnState.SPEAKING)
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

    async def _overlap_utterance(self, ev: SpeechEnd, eot: int) -> None:
        """append / keywords mode: the trainee spoke over the customer."""
        turn = self._new_turn(ev.onset_ns)
        turn.user_speech_end_ns, turn.eot_decision_ns = ev.end_ns, eot
        t0 = _now()
        try:
            text = await self.providers.stt.transcribe(ev.audio, STT_RATE, self.language)
        except ProviderError as exc:
            self._emit("error", reason=str(exc), stage=exc.stage)
            return
        turn.stt_final_ns = _now()
        turn.stage_ms["stt"] = (turn.stt_final_ns - t0) / 1e6
        if not text.strip() or self._closed:
            return
        reply = self._reply
        speaking = reply is not None and self._sm.state == TurnState.SPEAKING
        if self.mode == "keywords" and speaking:
            low = text.lower()
            if not any(k in low for k in self.keywords):
                return  # not an interruption: the customer goes on, the words are dropped
            assert reply is not None
            self._barge_in(ev.onset_ns)
            reply.barge.resolving = True  # type: ignore[union-attr]
            self._real_interruption(reply, turn, text)
            return
        if speaking or self._sm.state == TurnState.THINKING:
            self._pending.append((turn, text))  # append: answer after the reply
            return
        if self._sm.state == TurnState.LISTENING:
            self._to(TurnState.THINKING)
            self._start_turn(turn, None, text)

    # ---- user turn ----------------------------------------------------------------------
    def _start_turn(self, turn: TurnRecord, audio: np.ndarray | None, text: str | None) -> None:
        self._thinking_turn = turn
        self._turn_task = self._spawn(self._run_turn(turn, audio, text), f"turn{turn.turn}")

    async def _run_turn(self, turn: TurnRecord, audio: np.ndarray | None, text: str | None) -> None:
        error: str | None = None
        if audio is not None:
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
            self._to(TurnState.LISTENING)  # nothing was said (noise)
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

        return [ChatMessage("system", system_prompt(self.scenario)), *self._history]

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
        while not self.output.playout(uid).done:
            await asyncio.sleep(0.01)
        reply.speak_task = None
        self._finish_reply(reply, cut=False)
        if self._pending:
            turn, text = self._pending.pop(0)
            self._to(TurnState.THINKING)
            self._start_turn(turn, None, text)
        else:
            self._to(TurnState.LISTENING)
            if self._seg.in_speech:  # the trainee is already talking over the reply's end
                self._to(TurnState.USER_SPEAKING)

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
        if self._sm.state == TurnState.THINKING:
            self._thinking_turn = None
            self._to(TurnState.SPEAKING)

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
            self._history.append(ChatMessage("user", turn.user_text))
        if played:
            self._history.append(ChatMessage("assistant", played))

    def _cancel_reply(self) -> None:
        reply, self._reply = self._reply, None
        if reply is None:
            return
        for t in (reply.llm_task, reply.speak_task):
            if t is not None:
                t.cancel()
        if reply.pushed_any:
            self.output.flush()
