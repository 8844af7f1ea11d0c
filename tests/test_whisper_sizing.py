"""Whisper decode bounds: max_new_tokens sized to the audio, silence trimmed (no model needed)."""

from __future__ import annotations

import numpy as np

from coach.providers.whisper import token_cap, trim_silence


def test_token_cap_grows_with_the_audio_and_stays_in_the_window() -> None:
    assert token_cap(2.0, "en", 96) == 96  # a short question keeps the loop guard
    assert token_cap(23.0, "en", 96) >= 68 * 2  # a 23 s pitch: room for 68 words + punctuation
    assert token_cap(21.0, "zh", 96) > token_cap(21.0, "en", 96)
    assert token_cap(300.0, "zh", 96) == token_cap(30.0, "zh", 96) <= 440  # per 30 s window (448 positions)


def test_trim_silence_keeps_the_speech_and_a_margin() -> None:
    rate = 16000
    tone = 0.3 * np.sin(np.arange(rate) * 2 * np.pi * 200 / rate).astype(np.float32)
    audio = np.concatenate([np.zeros(2 * rate, np.float32), tone, np.zeros(3 * rate, np.float32)])
    out = trim_silence(audio)
    assert rate <= out.size <= rate + 2 * int(0.16 * rate)
    assert np.abs(out).max() > 0.29
    assert trim_silence(np.zeros(rate, np.float32)).size == 0
    assert trim_silence(np.zeros(5, np.float32)).size == 5
