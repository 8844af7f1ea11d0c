"""Inbound conversion (media/inbound.py): decoded frames → mono int16 at 16 kHz, no peer needed."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from aiortc.mediastreams import AudioStreamTrack

from media.inbound import Decimator, InboundAudio


def _frames(tone_hz: float, seconds: float, rate: int, layout: str, fmt: str = "s16") -> list[av.AudioFrame]:
    n = rate // 50
    t = np.arange(int(rate * seconds)) / rate
    x = (np.sin(2 * np.pi * tone_hz * t) * 10_000).astype(np.int16)
    frames = []
    for i in range(0, len(x) - n + 1, n):
        chunk = x[i : i + n]
        if layout == "stereo":
            data = np.stack([chunk, chunk // 2], axis=1).reshape(1, -1)  # packed L R, R at half level
        else:
            data = chunk[None, :]
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, i, fractions.Fraction(1, rate)
        if fmt != "s16":
            frame = av.AudioResampler(format=fmt, layout=layout, rate=rate).resample(frame)[0]
        frames.append(frame)
    return frames


def _dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


@pytest.mark.parametrize(("rate", "layout", "fmt"), [(48_000, "stereo", "s16"), (48_000, "mono", "s16"),
                                                      (16_000, "mono", "s16"), (48_000, "stereo", "fltp")])
def test_frames_become_16k_mono_with_the_tone_and_level_kept(rate: int, layout: str, fmt: str) -> None:
    inbound = InboundAudio(AudioStreamTrack(), lambda pcm, t: None)
    out = np.concatenate([inbound._convert(f) for f in _frames(440.0, 1.0, rate, layout, fmt)])
    assert out.dtype == np.int16
    assert 16_000 - 100 <= out.size <= 16_000  # a few samples may wait for the next frame
    steady = out[1600:-1600]
    assert _dominant_hz(steady, 16_000) == pytest.approx(440.0, abs=2.0)
    want_peak = 10_000 * (0.75 if layout == "stereo" else 1.0)  # stereo is the mean of L and R/2
    assert np.abs(steady).max() == pytest.approx(want_peak, rel=0.05)


def test_a_rate_change_mid_stream_is_followed() -> None:
    inbound = InboundAudio(AudioStreamTrack(), lambda pcm, t: None)
    first = np.concatenate([inbound._convert(f) for f in _frames(440.0, 0.5, 48_000, "stereo")])
    second = np.concatenate([inbound._convert(f) for f in _frames(440.0, 0.5, 24_000, "mono")])
    assert first.size + second.size == pytest.approx(16_000, abs=200)
    assert _dominant_hz(second[800:], 16_000) == pytest.approx(440.0, abs=4.0)


def test_decimator_keeps_speech_band_and_rejects_what_would_alias() -> None:
    def level(hz: float) -> float:
        dec = Decimator(3)
        t = np.arange(48_000) / 48_000
        x = (np.sin(2 * np.pi * hz * t) * 10_000).astype(np.int16)
        y = np.concatenate([dec(x[i : i + 960]) for i in range(0, x.size, 960)])[1600:]
        return float(np.sqrt(np.mean(y.astype(np.float64) ** 2)) / (10_000 / np.sqrt(2)))

    assert level(1_000) == pytest.approx(1.0, abs=0.02)
    assert level(5_000) == pytest.approx(1.0, abs=0.1)
    assert level(12_000) < 0.001  # would fold onto 4 kHz without the low-pass


def test_decimator_output_is_continuous_across_uneven_frames() -> None:
    t = np.arange(48_000) / 48_000
    x = (np.sin(2 * np.pi * 440 * t) * 10_000).astype(np.int16)
    whole = Decimator(3)(x)
    dec, parts, i = Decimator(3), [], 0
    for size in [7, 960, 1, 500, 2, 1000] * 100:
        parts.append(dec(x[i : i + size]))
        i += size
        if i >= x.size:
            break
    pieces = np.concatenate(parts)
    assert pieces.size == whole.size
    assert np.array_equal(pieces, whole)
