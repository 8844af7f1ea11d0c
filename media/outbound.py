"""Paced outbound audio: the customer's voice, implementing ``coach.contracts.AudioOutput``."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import fractions
import logging
import time
from typing import Callable

import av
import numpy as np
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from av import AudioFrame

from coach.contracts import Playout
from media.settings import MediaSettings

log = logging.getLogger(__name__)

FrameCallback = Callable[[str | None, np.ndarray, int], None]
_MAX_DONE_PLAYOUTS = 256  # finished utterances kept for playout() lookups
_MAX_LATE_FRAMES = 5  # after a loop stall this far behind, re-anchor the clock (no long burst)


@dataclasses.dataclass(slots=True)
class _Chunk:
    utterance_id: str
    pcm: np.ndarray  # int16 at the track's rate
    pos: int = 0  # samples of pcm already sent

    @property
    def remaining(self) -> int:
        return self.pcm.size - self.pos


@dataclasses.dataclass(slots=True)
class _Utterance:
    playout: Playout
    queued: int = 0  # samples waiting
    ended: bool = False
    flushed: bool = False
    done_future: asyncio.Future[None] | None = None  # resolved when done (played out or flushed)


class PacedAudioTrack(AudioStreamTrack):
    """Queue of utterance audio sent as 20 ms mono s16 frames on a real-time clock.

    recv() sends queued audio or silence. Frames never mix two utterances: an utterance's
    tail is zero-padded to a whole frame, and a not-yet-ended utterance with less than one
    frame buffered waits (silence is sent) instead of being padded mid-speech.
    """

    kind = "audio"

    def __init__(
        self,
        *,
        sample_rate: int = 48_000,
        frame_ms: int = 20,
        on_frame: FrameCallback | None = None,
    ) -> None:
        super().__init__()
        if frame_ms <= 0 or sample_rate * frame_ms % 1000:
            raise ValueError(f"frame_ms={frame_ms} does not divide {sample_rate} Hz into whole samples")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.samples_per_frame = sample_rate * frame_ms // 1000
        self.on_frame = on_frame
        self._time_base = fractions.Fraction(1, sample_rate)
        self._queue: collections.deque[_Chunk] = collections.deque()
        self._queued_samples = 0
        self._utterances: collections.OrderedDict[str, _Utterance] = collections.OrderedDict()
        self._resamplers: dict[tuple[str, int], av.AudioResampler] = {}
        self._active: set[str] = set()  # utterances not done yet (flush touches only these)
        self._start_ns: int | None = None
        # Speech start realigns the frame clock: while idle (silence going out) recv() waits on
        # this future as well as on its 20 ms slot, so a reply's first frame leaves as soon as it
        # is ready instead of waiting up to one frame (10 ms on average) for the next slot.
        self._idle = True
        self._wake: asyncio.Future[None] | None = None
        # Set by a shared clock that calls emit_frame() itself: audio ready while idle (a reply
        # starts) makes it send that frame at once instead of at its next tick.
        self.on_ready: Callable[[], None] | None = None
        self._pts = 0
        self._frame_index = 0
        self.stats = {"frames": 0, "audio_frames": 0, "underruns": 0, "late_resets": 0, "flushes": 0,
                      "flushed_ms": 0.0, "dropped_pushes": 0, "early_starts": 0}

    @classmethod
    def from_settings(cls, settings: MediaSettings, on_frame: FrameCallback | None = None) -> "PacedAudioTrack":
        return cls(sample_rate=settings.output_sample_rate, frame_ms=settings.output_frame_ms, on_frame=on_frame)

    # ---- AudioOutput ----------------------------------------------------------------------

    def push(self, utterance_id: str, pcm16: bytes, sample_rate: int) -> None:
        """Queue mono int16 PCM of ``utterance_id`` (any rate; resampled per input rate).

        Pushes for an utterance that was flushed are dropped: after a barge-in the TTS stream
        may still deliver a chunk or two before the coach cancels it.
        """
        if not 8_000 <= sample_rate <= 192_000:
            raise ValueError(f"unsupported sample rate {sample_rate}")
        if len(pcm16) % 2:
            raise ValueError("pcm16 must hold whole 16-bit samples (odd byte count)")
        utt = self._utterance(utterance_id)
        if utt.flushed or utt.ended or self.readyState != "live":
            self.stats["dropped_pushes"] += 1
            return
        pcm = np.frombuffer(pcm16, dtype=np.int16)
        if not isinstance(pcm16, bytes):
            pcm = pcm.copy()  # the caller may reuse a bytearray/memoryview buffer
        if sample_rate != self.sample_rate and pcm.size:
            pcm = self._resample(utterance_id, pcm, sample_rate)
        self._enqueue(utt, utterance_id, pcm)

    def end(self, utterance_id: str) -> None:
        """No more audio for this utterance; flush its resampler tail."""
        utt = self._utterance(utterance_id)
        if utt.ended or utt.flushed:
            return
        for key in [k for k in self._resamplers if k[0] == utterance_id]:
            tail = [f.to_ndarray().reshape(-1) for f in self._resamplers.pop(key).resample(None)]
            if tail:
                self._enqueue(utt, utterance_id, np.concatenate(tail))
        utt.ended = True
        self._wake_if_ready()
        self._check_done(utt)

    def flush(self) -> float:
        """Drop every queued frame now (barge-in); returns the milliseconds dropped."""
        dropped = self._queued_samples
        # every utterance not finished yet, including ones with nothing queued right now
        # (TTS between chunks): its later pushes are dropped
        for uid in self._active:
            utt = self._utterances.get(uid)
            if utt is not None:
                utt.flushed = True
                utt.queued = 0
                utt.playout.done = True
                _resolve_opt(utt.done_future)
        self._active.clear()
        self._queue.clear()
        self._queued_samples = 0
        self._resamplers.clear()
        ms = dropped * 1000.0 / self.sample_rate
        self.stats["flushes"] += 1
        self.stats["flushed_ms"] += ms
        return ms

    def wait_done(self, utterance_id: str) -> asyncio.Future[None]:
        """Future resolved once ``utterance_id`` is done: ended and played out, or flushed."""
        utt = self._utterance(utterance_id)
        if utt.done_future is None:
            utt.done_future = asyncio.get_running_loop().create_future()
            if utt.playout.done:
                utt.done_future.set_result(None)
        return utt.done_future

    def queued_ms(self) -> float:
        return self._queued_samples * 1000.0 / self.sample_rate

    def playout(self, utterance_id: str) -> Playout:
        """Snapshot of what was sent of ``utterance_id`` (blank if unknown)."""
        utt = self._utterances.get(utterance_id)
        if utt is None:
            return Playout(utterance_id=utterance_id)
        snap = dataclasses.replace(utt.playout)
        snap.queued_ms = utt.queued * 1000.0 / self.sample_rate
        return snap

    # ---- track ----------------------------------------------------------------------------

    async def recv(self) -> AudioFrame:
        uid, pcm, pts = await self._next_pcm()
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = pts
        frame.time_base = self._time_base
        return frame

    async def _next_pcm(self) -> tuple[str | None, np.ndarray, int]:
        """One paced frame: (utterance id or None for silence, its int16 samples, its pts).

        Waits for the frame's slot, takes it off the queue and does the playout bookkeeping and
        ``on_frame``; subclasses only turn the samples into what they send (recv()).
        """
        if self.readyState != "live":
            raise MediaStreamError
        await self._pace()
        return self.emit_frame()

    def emit_frame(self) -> tuple[str | None, np.ndarray, int]:
        """The next frame, now: taken off the queue, with its playout bookkeeping and
        ``on_frame`` done. recv() calls it at each paced slot; a shared clock (media/lean_send.py)
        calls it at its own ticks instead."""
        uid, pcm = self._take_frame()
        self._idle = uid is None
        pts = self._pts
        self._pts += self.samples_per_frame
        now = time.perf_counter_ns()
        self.stats["frames"] += 1
        if uid is not None:
            utt = self._utterances.get(uid)
            if utt is not None:
                p = utt.playout
                if p.first_frame_ns is None:
                    p.first_frame_ns = now
                p.last_frame_ns = now
                self._check_done(utt)
        if self.on_frame is not None:
            try:
                self.on_frame(uid, pcm, now)
            except Exception:  # a recorder bug must not silence the customer
                log.exception("on_frame callback failed; disabling it")
                self.on_frame = None
        return uid, pcm, pts

    async def _pace(self) -> None:
        """Sleep until this frame's slot (like aiortc's AudioStreamTrack, on perf_counter)."""
        now = time.perf_counter_ns()
        if self._start_ns is None:
            self._start_ns = now
            self._frame_index = 0
            return
        self._frame_index += 1
        frame_ns = self.frame_ms * 1_000_000
        due = self._start_ns + self._frame_index * frame_ns
        if now - due > _MAX_LATE_FRAMES * frame_ns:
            # the loop stalled; bursting all the missed frames would only add latency
            self.stats["late_resets"] += 1
            self._start_ns, self._frame_index = now, 0
            return
        if due <= now:
            return
        if not self._idle:
            await asyncio.sleep((due - now) / 1e9)
            return
        if not self._head_ready():
            loop = asyncio.get_running_loop()
            self._wake = loop.create_future()
            timer = loop.call_later((due - now) / 1e9, _resolve, self._wake)
            try:
                await self._wake
            finally:
                timer.cancel()
                self._wake = None
            if not self._head_ready():
                return  # the slot came first
        # Audio became ready between slots: send it now and count the next slots from here.
        self.stats["early_starts"] += 1
        self._start_ns, self._frame_index = time.perf_counter_ns(), 0

    def _head_ready(self) -> bool:
        """A whole frame (or an ended utterance's tail) waits at the head of the queue."""
        if not self._queue:
            return False
        utt = self._utterances.get(self._queue[0].utterance_id)
        return utt is not None and (utt.queued >= self.samples_per_frame or utt.ended)

    def _take_frame(self) -> tuple[str | None, np.ndarray]:
        n = self.samples_per_frame
        if not self._queue:
            return None, np.zeros(n, dtype=np.int16)
        head = self._queue[0]
        uid = head.utterance_id
        utt = self._utterances[uid]
        if utt.queued < n and not utt.ended:
            self.stats["underruns"] += 1  # TTS is behind real time: wait, don't pad mid-speech
            return None, np.zeros(n, dtype=np.int16)
        parts: list[np.ndarray] = []
        need = n
        while need and self._queue and self._queue[0].utterance_id == uid:
            chunk = self._queue[0]
            take = min(need, chunk.remaining)
            parts.append(chunk.pcm[chunk.pos : chunk.pos + take])
            chunk.pos += take
            need -= take
            if chunk.remaining == 0:
                self._queue.popleft()
        got = n - need
        if need:
            parts.append(np.zeros(need, dtype=np.int16))
        self._queued_samples -= got
        utt.queued -= got
        utt.playout.sent_ms += got * 1000.0 / self.sample_rate
        self.stats["audio_frames"] += 1
        pcm = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return uid, pcm

    # ---- helpers --------------------------------------------------------------------------

    def _utterance(self, utterance_id: str) -> _Utterance:
        utt = self._utterances.get(utterance_id)
        if utt is None:
            utt = _Utterance(Playout(utterance_id=utterance_id))
            self._utterances[utterance_id] = utt
            self._active.add(utterance_id)
            self._evict()
        return utt

    def _evict(self) -> None:
        # oldest first; an utterance still playing is never evicted
        if len(self._utterances) <= _MAX_DONE_PLAYOUTS + len(self._active):
            return
        for uid in [u for u, x in self._utterances.items() if x.playout.done][: len(self._utterances) // 4]:
            del self._utterances[uid]

    def _resample(self, utterance_id: str, pcm: np.ndarray, rate: int) -> np.ndarray:
        key = (utterance_id, rate)
        resampler = self._resamplers.get(key)
        if resampler is None:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
            self._resamplers[key] = resampler
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int16)

    def _enqueue(self, utt: _Utterance, utterance_id: str, pcm: np.ndarray) -> None:
        if pcm.size == 0:
            return
        self._queue.append(_Chunk(utterance_id, pcm))
        self._queued_samples += pcm.size
        utt.queued += pcm.size
        self._wake_if_ready()

    def _wake_if_ready(self) -> None:
        if self._wake is not None and not self._wake.done() and self._head_ready():
            self._wake.set_result(None)
        elif self.on_ready is not None and self._idle and self._head_ready():
            self._idle = False  # once per reply start: the clock sends the first frame now
            self.stats["early_starts"] += 1
            self.on_ready()

    def _check_done(self, utt: _Utterance) -> None:
        if utt.ended and utt.queued == 0:
            utt.playout.done = True
            self._active.discard(utt.playout.utterance_id)
            _resolve_opt(utt.done_future)


def _resolve_opt(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
