"""Offline STT: faster-whisper base int8 on CPU.

One model per process (loaded lazily, shared by every WhisperSTT instance) and ONE dedicated
worker thread for all inference: on a 2-core box two concurrent decodes only slow each other
down, and CTranslate2 already uses ``cpu_threads`` inside one call. Pending jobs are bounded
process-wide; beyond the bound we fail fast with ProviderError("stt", "busy") instead of letting
turns queue up for seconds.

Decoding options follow docs/notes offline-stack: always pass ``language`` (auto-detect called
Mandarin Thai and costs 0.4 s), temperature 0 and max_new_tokens (the temperature fallback on
bad audio took 8–14 s and looped), no timestamps, no conditioning, no built-in VAD (our silero
VAD already cut the utterance).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import av
import numpy as np

from coach.contracts import COACH_SAMPLE_RATE, ProviderError
from coach.providers.model_cache import ensure_whisper_model
from coach.providers.whisper_window import decode_in_window, window_for
from coach.settings import WhisperSettings

DEFAULT_MAX_PENDING = 4
MIN_SAMPLES = COACH_SAMPLE_RATE // 10  # < 100 ms of audio: nothing to transcribe

_executor: ThreadPoolExecutor | None = None
_models: dict[tuple[str, str, int], Any] = {}
_state_lock = threading.Lock()  # guards _executor, _models and _pending (any thread/loop)
_pending = 0


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _state_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        return _executor


def _load_model(settings: WhisperSettings) -> Any:
    """Runs in the whisper thread only, so two loads can never race."""
    from faster_whisper import WhisperModel  # heavy import; keep it off module import

    model_dir = ensure_whisper_model(settings.model_dir)
    key = (str(model_dir), settings.compute_type, settings.cpu_threads)
    model = _models.get(key)
    if model is None:
        try:
            model = WhisperModel(
                str(model_dir),
                device="cpu",
                compute_type=settings.compute_type,
                cpu_threads=settings.cpu_threads,
                num_workers=1,
            )
        except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError on bad files
            raise ProviderError("stt", f"cannot load whisper model from {model_dir}: {exc}") from exc
        _models[key] = model
    return model


def preload(settings: WhisperSettings) -> Future[Any]:
    """Start assembling + loading the model in the whisper thread now (returns at once), so the
    first turn does not pay for it."""
    return _get_executor().submit(_load_model, settings)


def to_float16k(pcm16: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono int16 at any rate -> float32 in [-1, 1) at 16 kHz (libswresample via PyAV)."""
    pcm = np.ascontiguousarray(pcm16, dtype=np.int16)
    if sample_rate != COACH_SAMPLE_RATE:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = sample_rate
        resampler = av.AudioResampler(format="s16", layout="mono", rate=COACH_SAMPLE_RATE)
        out = [f.to_ndarray().reshape(-1) for f in (*resampler.resample(frame), *resampler.resample(None))]
        pcm = np.concatenate(out) if out else np.zeros(0, dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0


# Tokens per second of speech, generous: English ~3 words/s, Mandarin ~5 characters/s at 1-2
# tokens each, and measured with faster-whisper 1.2.1 the cap buys only about half as many text
# tokens (cap 167 stopped our 25 s monologue after 85 tokens, "...So add"; 440 gave all 96).
# A fixed cap of 96 kept only 37-39 of the 68 words of a 23 s pitch (issue 14); sizing it to the
# audio still keeps short turns bounded against repetition loops.
_TOKENS_PER_S = {"en": 12.0, "zh": 20.0}
_WINDOW_TOKENS = 440  # whisper decodes 30 s windows with at most 448 positions (prompt included)
_TRIM_FRAME = COACH_SAMPLE_RATE // 100  # 10 ms
_TRIM_PAD = COACH_SAMPLE_RATE * 15 // 100  # keep 150 ms around the speech
_TRIM_RMS = 10 ** (-45 / 20)  # below -45 dBFS counts as silence


def token_cap(seconds: float, language: str, floor: int) -> int:
    """max_new_tokens for ``seconds`` of audio (per 30 s window), never below ``floor``."""
    per_window = min(seconds, 30.0) * _TOKENS_PER_S.get(language[:2], 8.0) + 16
    return int(min(_WINDOW_TOKENS, max(floor, per_window)))


def trim_silence(audio: np.ndarray) -> np.ndarray:
    """Drop leading/trailing silence (keeping 150 ms): fewer frames to encode, fewer phantom
    words ("Thank you.") from quiet tails."""
    n = audio.size // _TRIM_FRAME
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(np.square(audio[: n * _TRIM_FRAME].reshape(n, _TRIM_FRAME)), axis=1))
    loud = np.flatnonzero(rms > _TRIM_RMS)
    if loud.size == 0:
        return audio[:0]
    start = max(0, loud[0] * _TRIM_FRAME - _TRIM_PAD)
    end = min(audio.size, (loud[-1] + 1) * _TRIM_FRAME + _TRIM_PAD)
    return audio[start:end]


def _release_slot(_job: object) -> None:
    global _pending
    with _state_lock:
        _pending -= 1


def pending_jobs() -> int:
    """Transcriptions queued or running in this process (metrics)."""
    return _pending


class WhisperSTT:
    """coach.contracts.STTProvider backed by faster-whisper."""

    def __init__(self, settings: WhisperSettings | None = None, max_pending: int = DEFAULT_MAX_PENDING):
        self.settings = settings or WhisperSettings()
        self.max_pending = max_pending
        self.last_stats: dict[str, float] = {}  # ms of the latest call: queue, resample, decode

    async def warmup(self) -> None:
        """Assemble + load the model and run one tiny decode, so the first turn is not slow."""
        # a quiet tone, not silence: silence is trimmed away and would skip the decode
        tone = (3000 * np.sin(np.arange(COACH_SAMPLE_RATE // 2) * 2 * np.pi * 220 / COACH_SAMPLE_RATE))
        await self.transcribe(tone.astype(np.int16), COACH_SAMPLE_RATE, "en")

    async def transcribe(self, pcm16: np.ndarray, sample_rate: int, language: str) -> str:
        pcm16 = self._validate(pcm16, sample_rate, language)
        global _pending
        with _state_lock:
            if _pending >= self.max_pending:
                raise ProviderError("stt", "busy")
            _pending += 1
        # Released when the job really finishes (or is cancelled before it starts), not when
        # the awaiting turn is cancelled: an abandoned decode still occupies the thread.
        job = _get_executor().submit(self._run, pcm16, sample_rate, language, time.perf_counter_ns())
        job.add_done_callback(_release_slot)
        return await asyncio.wrap_future(job)

    # ---- internals ---------------------------------------------------------------------

    @staticmethod
    def _validate(pcm16: np.ndarray, sample_rate: int, language: str) -> np.ndarray:
        if not isinstance(pcm16, np.ndarray):
            raise ProviderError("stt", f"expected a numpy int16 array, got {type(pcm16).__name__}")
        if pcm16.ndim == 2 and 1 in pcm16.shape:
            pcm16 = pcm16.reshape(-1)
        if pcm16.ndim != 1:
            raise ProviderError("stt", f"expected mono audio, got shape {pcm16.shape}")
        if pcm16.dtype != np.int16:
            raise ProviderError("stt", f"expected int16 samples, got {pcm16.dtype}")
        if not 8_000 <= int(sample_rate) <= 192_000:
            raise ProviderError("stt", f"unsupported sample rate {sample_rate}")
        if not language or not language.isascii() or not 2 <= len(language) <= 5:
            raise ProviderError("stt", f"invalid language {language!r}")
        return pcm16

    def _run(self, pcm16: np.ndarray, sample_rate: int, language: str, submitted_ns: int) -> str:
        """Whisper thread: resample, (load), decode. Returns the stripped text."""
        t0 = time.perf_counter_ns()
        audio = trim_silence(to_float16k(pcm16, sample_rate))
        t1 = time.perf_counter_ns()
        if audio.size < MIN_SAMPLES:
            self.last_stats = {"queue_ms": (t0 - submitted_ns) / 1e6, "resample_ms": (t1 - t0) / 1e6, "decode_ms": 0.0}
            return ""
        model = _load_model(self.settings)
        t2 = time.perf_counter_ns()
        window = window_for(audio.size / COACH_SAMPLE_RATE) if self.settings.fit_window else None
        cap = token_cap(audio.size / COACH_SAMPLE_RATE, language, self.settings.max_new_tokens)
        try:
            if window is not None:
                text = decode_in_window(model, audio, language=language, beam_size=self.settings.beam_size,
                                        max_new_tokens=cap, window_s=window)
            else:
                text = self._decode_30s(model, audio, language, cap)
        except ProviderError:
            raise
        except Exception as exc:  # e.g. ValueError for an unknown language code
            raise ProviderError("stt", f"whisper failed: {exc}") from exc
        t3 = time.perf_counter_ns()
        self.last_stats = {
            "queue_ms": (t0 - submitted_ns) / 1e6,
            "resample_ms": (t1 - t0) / 1e6,
            "load_ms": (t2 - t1) / 1e6,
            "decode_ms": (t3 - t2) / 1e6,
            "window_s": float(window or 30),
        }
        return text

    def _decode_30s(self, model: Any, audio: np.ndarray, language: str, cap: int) -> str:
        """faster-whisper's own loop: sliding 30 s windows (long turns)."""
        segments, _info = model.transcribe(
            audio,
            language=language,
            beam_size=max(self.settings.beam_size, self.settings.long_turn_beam_size),
            temperature=0.0,
            without_timestamps=True,
            max_new_tokens=cap,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return "".join(segment.text for segment in segments).strip()
