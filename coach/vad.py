"""Silero VAD on onnxruntime (no torch) and a streaming speech segmenter.

The ONNX model is the one packaged inside the installed ``silero-vad`` wheel. We locate its data
directory with ``importlib.util.find_spec`` and never import the package itself: its
``__init__`` imports torch (+0.9 s, +165 MiB).

Cost: ~80 µs CPU per 32 ms chunk with one intra/inter-op thread (notes/aiortc-limits.md, 1a).
That is ~0.25 % of a core per stream, cheaper than an executor hop (~50-100 µs plus a context
switch), so the segmenter runs inline on the event loop.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import onnxruntime as ort

from coach.settings import VadSettings

CHUNK = 512  # samples per model call at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk the model wants in front of each chunk
MODEL_RATE = 16_000


def silero_model_path(name: str = "silero_vad.onnx") -> Path:
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("silero-vad is not installed (need its packaged silero_vad.onnx)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / name
    if not path.exists():
        raise RuntimeError(f"silero VAD model not found at {path}")
    return path


class SileroVad:
    """One ONNX session per process, shared by every stream (the state lives in VadStream)."""

    _shared: SileroVad | None = None
    _lock = threading.Lock()

    def __init__(self, model_path: Path | None = None):
        opts = ort.SessionOptions()
        # One thread: default threading costs 1.75x the CPU for a 15 % wall gain (notes 1a).
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model_path or silero_model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(MODEL_RATE, dtype=np.int64)

    @classmethod
    def shared(cls) -> SileroVad:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def stream(self) -> VadStream:
        return VadStream(self)

    def _run(self, x: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        probs, new_state = self.run_batch(x, state)
        return float(probs[0]), new_state

    def run_batch(self, x: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of several streams at once: ``x`` (B, 576), ``state`` (2, B, 128) → probabilities
        (B,) and the new states. Each row's result equals its own single-row call."""
        out, new_state = self.session.run(None, {"input": x, "state": state, "sr": self._sr})
        return out[:, 0], new_state


class VadStream:
    """Per-session model state: RNN state + the last 64 samples of context."""

    def __init__(self, vad: SileroVad):
        self.vad = vad
        self.reset()

    def reset(self) -> None:
        self.state = np.zeros((2, 1, 128), dtype=np.float32)  # the RNN state, (2, 1, 128)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def model_input(self, chunk: np.ndarray) -> np.ndarray:
        """The model's input row for the next chunk (float32 in [-1, 1]): the previous chunk's
        last 64 samples, then this chunk. Advances the context, so call it once per chunk."""
        if chunk.shape != (CHUNK,):
            raise ValueError(f"VAD chunk must be {CHUNK} samples, got {chunk.shape}")
        x = np.concatenate([self._context, chunk.astype(np.float32, copy=False)])
        self._context = x[-CONTEXT:].copy()
        return x

    def prob(self, chunk: np.ndarray) -> float:
        """Speech probability of one 512-sample float32 chunk in [-1, 1]."""
        p, self.state = self.vad._run(self.model_input(chunk)[None, :], self.state)
        return p


ScoreCallback = Callable[[float], None]


class ChunkBatcher(Protocol):
    """Scores chunks of many streams together (coach.vad_batch.VadBatcher): ``done(p)`` is
    called later, on the event loop, in each stream's chunk order."""

    vad: SileroVad

    def register(self, stream: VadStream) -> None: ...

    def unregister(self, stream: VadStream) -> None: ...

    def submit(self, stream: VadStream, x: np.ndarray, done: ScoreCallback) -> None: ...


@dataclass(slots=True)
class SpeechStart:
    onset_ns: int  # start of the first speech chunk
    confirmed_ns: int  # end of the chunk that made it speech (min_speech_ms after the onset)


@dataclass(slots=True)
class SpeechEnd:
    onset_ns: int
    end_ns: int  # end of the last speech chunk (VAD end minus the silence window)
    decided_ns: int  # when the silence window completed (caller's clock)
    audio: np.ndarray = field(repr=False)  # int16 utterance incl. prefix pad and trailing silence

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.onset_ns) / 1e6


@dataclass(slots=True)
class SpeechPause:
    """Short silence inside an utterance (``pause_ms``): a candidate end of turn."""

    onset_ns: int
    end_ns: int  # end of the last speech chunk
    decided_ns: int

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.onset_ns) / 1e6


@dataclass(slots=True)
class SpeechResume:
    """Speech again after a SpeechPause, before the utterance ended."""

    t_ns: int


VadEvent = SpeechStart | SpeechEnd | SpeechPause | SpeechResume


class VadSegmenter:
    """Streaming endpointing with hysteresis.

    ``feed(pcm16, t_ns)``: ``t_ns`` is the time of the LAST sample of ``pcm16`` (arrival time).
    Each chunk's time is derived from it by sample offset, so synthetic clocks (feeding faster
    than real time) give consistent timestamps.
    """

    def __init__(self, settings: VadSettings, sample_rate: int = MODEL_RATE,
                 vad: SileroVad | ChunkBatcher | None = None, *, pause_ms: int | None = None,
                 silence_ms: int | None = None, on_event: Callable[[VadEvent], None] | None = None):
        """``pause_ms``: also emit SpeechPause after that much silence (None: never);
        ``silence_ms``: silence that ends an utterance (default ``settings.silence_ms``).

        ``vad`` a SileroVad: each chunk is scored inline (``feed`` returns the events, ``push``
        hands them to ``on_event``). A batcher: chunks are scored later with other streams'
        (``push`` only; events reach ``on_event`` then); call ``close()`` when done."""
        if sample_rate != MODEL_RATE:
            raise ValueError("VadSegmenter expects 16 kHz audio")
        self.settings = settings
        self.pause_ms = pause_ms
        self.silence_ms = silence_ms if silence_ms is not None else settings.silence_ms
        self.on_event = on_event
        self._paused = False  # a SpeechPause was emitted for the current silence
        self._batcher: ChunkBatcher | None = None
        if vad is None or isinstance(vad, SileroVad):
            self.stream = (vad or SileroVad.shared()).stream()
        else:
            self._batcher = vad
            self.stream = vad.vad.stream()
            vad.register(self.stream)
        self._ns_per_sample = 1e9 / sample_rate
        self._pending = np.zeros(0, dtype=np.int16)
        self._pad_chunks = max(0, round(settings.prefix_pad_ms / 32))
        self._history: list[np.ndarray] = []  # chunks before the candidate onset (prefix pad)
        self._utt: list[np.ndarray] = []  # chunks since the candidate onset
        self.in_speech = False  # confirmed speech (SpeechStart emitted, no SpeechEnd yet)
        self._cand_onset: int | None = None  # first chunk start of the current speech run
        self._last_speech_end: int | None = None  # end of the latest speech chunk
        self._silence_start: int | None = None
        self.last_prob = 0.0
        self.chunks = 0

    @property
    def onset_ns(self) -> int | None:
        return self._cand_onset

    def cut(self, decided_ns: int) -> SpeechEnd | None:
        """End the current utterance now (the turn was judged complete before the maximum
        silence): the next speech starts a new utterance with its own SpeechStart."""
        if self._cand_onset is None or not self.in_speech:
            return None
        audio = np.concatenate(self._history + self._utt)
        ev = SpeechEnd(self._cand_onset, self._last_speech_end or decided_ns, decided_ns, audio)
        self._history = self._utt[-(self._pad_chunks + 1):]
        self._reset_run()
        return ev

    def current_audio(self) -> np.ndarray:
        """The current utterance so far (prefix pad included), int16."""
        parts = self._history + self._utt if self._cand_onset is not None else []
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def speech_ms(self) -> float:
        """Length of the current (candidate or confirmed) speech run, 0 when none."""
        if self._cand_onset is None or self._last_speech_end is None:
            return 0.0
        return (self._last_speech_end - self._cand_onset) / 1e6

    def feed(self, pcm16: np.ndarray, t_ns: int) -> list[VadEvent]:
        """Score ``pcm16`` inline and return its events (a segmenter without a batcher)."""
        if self._batcher is not None:
            raise RuntimeError("a batched VadSegmenter takes audio through push()")
        events: list[VadEvent] = []
        for chunk, start_ns, end_ns in self._chunks(pcm16, t_ns):
            ev = self._step(chunk, start_ns, end_ns, self.stream.prob(_to_float(chunk)))
            if ev is not None:
                events.append(ev)
        return events

    def push(self, pcm16: np.ndarray, t_ns: int) -> None:
        """Like ``feed``, with the events handed to ``on_event`` (later, when batched)."""
        if self._batcher is None:
            for ev in self.feed(pcm16, t_ns):
                self._deliver(ev)
            return
        for chunk, start_ns, end_ns in self._chunks(pcm16, t_ns):
            x = self.stream.model_input(_to_float(chunk))
            self._batcher.submit(self.stream, x, _Scored(self, chunk, start_ns, end_ns))

    def close(self) -> None:
        """Leave the batcher: chunks still waiting there are dropped, with their events."""
        if self._batcher is not None:
            self._batcher.unregister(self.stream)

    def _deliver(self, ev: VadEvent) -> None:
        if self.on_event is not None:
            self.on_event(ev)

    def _chunks(self, pcm16: np.ndarray, t_ns: int) -> Iterator[tuple[np.ndarray, int, int]]:
        """Whole 512-sample chunks with their start/end times; the remainder waits."""
        pcm16 = np.asarray(pcm16, dtype=np.int16).reshape(-1)
        buf = np.concatenate([self._pending, pcm16]) if self._pending.size else pcm16
        n_full = buf.size // CHUNK
        self._pending = buf[n_full * CHUNK :].copy()
        for i in range(n_full):
            after = buf.size - (i + 1) * CHUNK  # samples after this chunk's end
            end_ns = int(t_ns - after * self._ns_per_sample)
            yield buf[i * CHUNK : (i + 1) * CHUNK], int(end_ns - CHUNK * self._ns_per_sample), end_ns

    def _step(self, chunk: np.ndarray, start_ns: int, end_ns: int, p: float) -> VadEvent | None:
        s = self.settings
        self.last_prob = p
        self.chunks += 1
        if self._cand_onset is None:
            self._history.append(chunk)
            if len(self._history) > self._pad_chunks + 1:
                del self._history[0]
            if p >= s.threshold:
                self._cand_onset, self._last_speech_end = start_ns, end_ns
                self._utt = [self._history.pop()]  # this chunk starts the utterance
                return self._maybe_confirm()
            return None
        self._utt.append(chunk)
        if p >= s.neg_threshold:  # hysteresis: between the thresholds speech continues
            self._last_speech_end, self._silence_start = end_ns, None
            if self._paused:
                self._paused = False
                return SpeechResume(start_ns)
            return self._maybe_confirm()
        if not self.in_speech:  # candidate dropped before min_speech_ms: noise
            self._history = (self._history + self._utt)[-(self._pad_chunks + 1) :]
            self._reset_run()
            return None
        if self._silence_start is None:
            self._silence_start = start_ns
        silent_ms = (end_ns - self._silence_start) / 1e6
        if self.pause_ms is not None and not self._paused and self.pause_ms <= silent_ms < self.silence_ms:
            self._paused = True
            return SpeechPause(self._cand_onset, self._last_speech_end or start_ns, end_ns)
        if silent_ms >= self.silence_ms:
            audio = np.concatenate(self._history + self._utt)
            ev = SpeechEnd(self._cand_onset, self._last_speech_end or start_ns, end_ns, audio)
            self._history = self._utt[-(self._pad_chunks + 1) :]
            self._reset_run()
            return ev
        return None

    def _maybe_confirm(self) -> SpeechStart | None:
        if not self.in_speech and self.speech_ms() >= self.settings.min_speech_ms:
            self.in_speech = True
            return SpeechStart(self._cand_onset, self._last_speech_end)  # type: ignore[arg-type]
        return None

    def _reset_run(self) -> None:
        self.in_speech = False
        self._paused = False
        self._cand_onset = self._last_speech_end = self._silence_start = None
        self._utt = []


def _to_float(chunk: np.ndarray) -> np.ndarray:
    return chunk.astype(np.float32) / 32768.0


class _Scored:
    """A batched chunk's continuation: step the segmenter with its probability, hand on the event."""

    __slots__ = ("seg", "chunk", "start_ns", "end_ns")

    def __init__(self, seg: VadSegmenter, chunk: np.ndarray, start_ns: int, end_ns: int) -> None:
        self.seg, self.chunk, self.start_ns, self.end_ns = seg, chunk, start_ns, end_ns

    def __call__(self, p: float) -> None:
        ev = self.seg._step(self.chunk, self.start_ns, self.end_ns, p)
        if ev is not None:
            self.seg._deliver(ev)
