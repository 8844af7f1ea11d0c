"""Whisper on a window the size of the turn, not the model's fixed 30 s.

faster-whisper pads every decode to 30 s of log-mel frames, and the encoder's cost follows
the frames, not the speech: a 3 s question paid for 30 s. CTranslate2's Whisper accepts fewer
frames, so a turn shorter than the largest window is encoded on the smallest window that holds
it (plus a margin) and decoded straight from CTranslate2 with the same options the provider
uses (given language, no timestamps, no conditioning, temperature 0, token cap). Measured on
the espeak fixtures (bench/bench_whisper_window.py): the en question 3 s, 30 s window vs 10 s:
~0.9-1.8 s vs ~0.25-0.6 s, same words. Longer turns keep faster-whisper's sliding 30 s windows.
"""

from __future__ import annotations

from typing import Any

import ctranslate2
import numpy as np
from faster_whisper.tokenizer import Tokenizer

WINDOWS_S = (10, 15, 20, 25)  # candidate windows; beyond the last: faster-whisper's 30 s windows
MARGIN_S = 1.0  # room after the speech so the model hears the turn end
FRAMES_PER_S = 100  # whisper's log-mel hop: 10 ms


def window_for(seconds: float) -> int | None:
    """The smallest window (s) holding ``seconds`` of audio plus the margin; None: use 30 s ones."""
    return next((w for w in WINDOWS_S if seconds + MARGIN_S <= w), None)


def decode_in_window(model: Any, audio: np.ndarray, *, language: str, beam_size: int, max_new_tokens: int,
                     window_s: int) -> str:
    """Transcribe ``audio`` (float32, 16 kHz, shorter than ``window_s``) with ``model`` (a
    faster_whisper.WhisperModel) encoding only ``window_s`` seconds of frames."""
    frames = window_s * FRAMES_PER_S
    features = model.feature_extractor(audio)[:, :frames]
    if features.shape[1] < frames:
        features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
    batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
    prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
    result = model.model.generate(batch, [prompt], beam_size=beam_size, max_length=len(prompt) + max_new_tokens,
                                  suppress_blank=True, suppress_tokens=[-1], return_scores=False)
    tokens = [t for t in result[0].sequences_ids[0] if t < tokenizer.eot]
    return str(tokenizer.decode(tokens)).strip()
