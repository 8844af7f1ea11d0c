"""Semantic end-of-turn: the smart-turn v3 model (BSD-2, by Daily) on onnxruntime.

The ONNX file ships inside the ``pipecat-ai`` wheel (installed with ``--no-deps``, see README).
Like coach/vad.py with silero, we only locate the package's directory with
``importlib.util.find_spec`` and never import pipecat. Input: Whisper log-mel features (80 x 800)
of the last 8 s of 16 kHz audio, zero-padded in front, waveform normalised to zero mean / unit
variance first (what pipecat's local_smart_turn_v3.py does); faster-whisper's FeatureExtractor
computes the mel spectrogram. Output: P(turn complete).

Cost: ~25-40 ms per call on this 2-core box (features ~8 ms + model), so the agent runs it in a
one-thread executor, off the event loop.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

MODEL_RATE = 16_000
WINDOW_S = 8
MODEL_NAME = "smart-turn-v3.2-cpu.onnx"


def smart_turn_model_path() -> Path | None:
    """The model inside the installed pipecat-ai wheel, or None (not installed)."""
    try:
        spec = importlib.util.find_spec("pipecat")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "audio" / "turn" / "smart_turn" / "data" / MODEL_NAME
        if path.exists():
            return path
    return None


class SmartTurn:
    """One ONNX session per process (stateless model: every call sees the whole window)."""

    _shared: SmartTurn | None = None
    _shared_failed = False
    _lock = threading.Lock()

    def __init__(self, model_path: Path):
        from faster_whisper.feature_extractor import FeatureExtractor

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # one core per inference; the other serves the loop
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(model_path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self._features = FeatureExtractor(feature_size=80, sampling_rate=MODEL_RATE, chunk_length=WINDOW_S)
        self._run_lock = threading.Lock()  # FeatureExtractor/session shared across threads

    @classmethod
    def shared(cls) -> SmartTurn | None:
        """The process-wide model, or None (file missing: silence-only endpointing, logged once)."""
        with cls._lock:
            if cls._shared is None and not cls._shared_failed:
                path = smart_turn_model_path()
                if path is None:
                    cls._shared_failed = True
                    log.warning("smart-turn model not found (pip install --no-deps pipecat-ai==1.14.0); "
                                "end of turn falls back to silence only")
                else:
                    cls._shared = cls(path)
            return cls._shared

    def features(self, pcm16: np.ndarray) -> np.ndarray:
        """Log-mel (1, 80, 800) of the last 8 s of ``pcm16`` (mono int16, 16 kHz)."""
        n = WINDOW_S * MODEL_RATE
        x = np.asarray(pcm16, dtype=np.float32)[-n:] / 32768.0
        if x.size < n:
            x = np.concatenate([np.zeros(n - x.size, dtype=np.float32), x])
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        mel = self._features(x, padding=0)[:, :n // 160]
        return mel[None, :, :].astype(np.float32)

    def probability(self, pcm16: np.ndarray) -> float:
        """P(the speaker finished their turn) for audio that ends at the current moment."""
        feats = self.features(pcm16)
        with self._run_lock:
            out = self.session.run(None, {"input_features": feats})
        return float(np.asarray(out[0]).reshape(-1)[0])
