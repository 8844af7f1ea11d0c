"""The customer's reply: its timeline of clause audio, and the speaker that plays it.

Reply audio of one reply lives on a "timeline" (samples at the TTS rate, clause after clause).
A barge-in flushes the output and remembers how far the timeline was played; a false
interruption resumes from exactly there under a new utterance id (the flushed one is dead).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from coach.contracts import AudioOutput, InterruptionRecord, ProviderError, TurnRecord
from coach.text import played_text

_now = time.perf_counter_ns


@dataclass
class Barge:
    """A barge-in that stopped the reply (kept until it resumes or is cut)."""

    onset_ns: int
    decision_ns: int
    flushed_ms: float
    last_frame_ns: int | None


def _future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


@dataclass
class Reply:
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
    llm_task: asyncio.Task[None] | None = None
    speak_task: asyncio.Task[None] | None = None
    barge: Barge | None = None
    pushed_any: bool = False
    # reply handle: set by the output track's playout, never polled
    played: asyncio.Future[None] = field(default_factory=_future)
    interrupted: asyncio.Future[None] = field(default_factory=_future)
    done: asyncio.Future[None] = field(default_factory=_future)

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

    def planned_text(self) -> str:
        return "".join(self.clauses).strip()


def resolve(future: asyncio.Future[None]) -> None:
    """Set a reply handle once (later calls are no-ops)."""
    if not future.done():
        future.set_result(None)


class ReplySpeaker:
    """Plays reply timelines on the output: TTS clause by clause, pipelined, skipping what was heard.

    ``providers`` and ``scenario`` are read at each play (their ``tts`` / ``voice`` may change);
    ``emit`` reports provider errors; ``on_audio`` runs after every push (the agent's policy hook).
    """

    MAX_TTS_AHEAD_MS = 1500.0  # don't synthesize the next clause while this much is queued

    def __init__(self, *, output: AudioOutput, providers: Any, scenario: Any, language: str,
                 emit: Callable[..., None], on_audio: Callable[[], None]) -> None:
        self.output = output
        self.providers = providers
        self.scenario = scenario
        self.language = language
        self._emit = emit
        self._on_audio = on_audio

    async def play(self, reply: Reply) -> None:
        """Play the reply timeline from ``reply.base_samples`` until its text ends and playout is done."""
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
        resolve(reply.done)

    def _push(self, reply: Reply, uid: str, data: bytes, pos: int, skip: int) -> None:
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
            resolve(reply.played)
        self._on_audio()

    def played(self, reply: Reply) -> str:
        """The words of the reply the trainee has heard so far."""
        played_ms = reply.base_samples * 1000.0 / reply.sample_rate
        if reply.barge is None and reply.uids:
            played_ms += self.output.playout(reply.uids[-1]).sent_ms
        return played_text(reply.segments(), played_ms, self.language)

    def first_frame_ns(self, reply: Reply) -> int | None:
        for uid in reply.uids:
            t = self.output.playout(uid).first_frame_ns
            if t is not None:
                return t
        return None

    def last_frame_ns(self, reply: Reply) -> int | None:
        for uid in reversed(reply.uids):
            t = self.output.playout(uid).last_frame_ns
            if t is not None:
                return t
        return None

    def stop(self, reply: Reply, onset_ns: int | None) -> None:
        """Barge-in: stop the reply's audio now, keeping its timeline position for a resume."""
        decision = _now()
        if reply.speak_task is not None:
            reply.speak_task.cancel()  # stop TTS; the LLM keeps writing the text
            reply.speak_task = None
        flushed = self.output.flush()
        uid = reply.uids[-1] if reply.uids else None
        po = self.output.playout(uid) if uid else None
        sent = int((po.sent_ms if po else 0.0) * reply.sample_rate / 1000)
        reply.base_samples += sent  # resume point on the reply timeline
        reply.barge = Barge(onset_ns or decision, decision, flushed, self.last_frame_ns(reply))

    def just_started(self, reply: Reply, guard_ms: float) -> bool:
        """Within ``guard_ms`` of the reply's first frame (or before it): speech now may be its echo."""
        first = self.first_frame_ns(reply)
        return first is None or (_now() - first) / 1e6 < guard_ms

    def interruption(self, reply: Reply, *, session_id: str, mode: str, false: bool) -> InterruptionRecord | None:
        """The record of the reply's barge-in (None when it was not barged in on)."""
        b = reply.barge
        if b is None:
            return None
        return InterruptionRecord(
            session_id=session_id,
            turn=reply.turn.turn if reply.turn else 0,
            user_onset_ns=b.onset_ns,
            decision_ns=b.decision_ns,
            last_reply_frame_ns=b.last_frame_ns,
            flushed_ms=b.flushed_ms,
            planned_text=reply.planned_text(),
            played_text=self.played(reply),
            mode=mode,
            false_interruption=false,
            resumed=false,
        )
