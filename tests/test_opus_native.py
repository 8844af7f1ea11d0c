"""Opus decoded at 16 kHz by libopus itself (media/opus_native.py), and a practice receiver using it."""

from __future__ import annotations

import asyncio
import fractions

import av
import numpy as np
import pytest
from aiortc.jitterbuffer import JitterFrame

from media.inline_decode import InlineDecodeQueue, decode_received_audio_at
from media.opus_native import NativeOpusDecoder
from qa.audio import ToneTrack
from qa.detect import tone_power
from tests.test_media import _Pair


def _packets(hz: float = 440.0, seconds: float = 1.0) -> list[bytes]:
    enc = av.CodecContext.create("libopus", "w")
    enc.bit_rate, enc.format, enc.layout, enc.sample_rate = 48_000, "s16", "mono", 48_000
    enc.time_base = fractions.Fraction(1, 48_000)
    t = np.arange(int(48_000 * seconds)) / 48_000
    x = (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
    packets: list[bytes] = []
    for i in range(0, x.size, 960):
        frame = av.AudioFrame.from_ndarray(x[None, i : i + 960], format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48_000, i
        packets += [bytes(p) for p in enc.encode(frame)]
    return packets


def test_a_tone_decodes_at_16k_mono_with_its_timestamps() -> None:
    assert NativeOpusDecoder.available()  # PyAV's wheel bundles libopus
    decoder = NativeOpusDecoder(16_000)
    frames = [f for i, p in enumerate(_packets()) for f in decoder.decode(JitterFrame(p, timestamp=960 * i))]
    assert [f.samples for f in frames] == [320] * len(frames)
    assert {(f.sample_rate, f.layout.name, f.format.name) for f in frames} == {(16_000, "mono", "s16")}
    assert [f.pts for f in frames] == [320 * i for i in range(len(frames))]
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])[1600:]
    assert tone_power(pcm, 16_000, 440) > 100 * tone_power(pcm, 16_000, 1000)
    assert 7000 < np.abs(pcm).max() < 9000


def test_a_corrupt_packet_is_nothing_to_play_and_the_next_one_decodes() -> None:
    decoder = NativeOpusDecoder(16_000)
    packets = _packets(seconds=0.2)
    assert decoder.decode(JitterFrame(b"\xff\xff\xff\xff", timestamp=0)) == [] and decoder.errors == 1
    assert decoder.decode(JitterFrame(packets[0], timestamp=960))[0].samples == 320
    with pytest.raises(ValueError):
        NativeOpusDecoder(44_100)


async def test_a_receiver_asked_for_16k_hands_the_inbound_16k_frames() -> None:
    tone = ToneTrack(freq_hz=440, amplitude=0.3)
    async with _Pair(tone) as pair:
        assert decode_received_audio_at(pair.b, 16_000)
        tone.sounding = True
        await asyncio.sleep(0.6)
        receiver = next(t.receiver for t in pair.b.getTransceivers() if t.kind == "audio")
        decode_queue = receiver._RTCRtpReceiver__decoder_queue
        assert isinstance(decode_queue, InlineDecodeQueue)
        assert isinstance(decode_queue._decoder, NativeOpusDecoder) and decode_queue._decoder.errors == 0
        pcm = np.concatenate([c for c, _ in pair.chunks])
    assert {c.size for c, _ in pair.chunks[-10:]} == {320}  # 20 ms at 16 kHz, nothing resampled
    window = pcm[np.argmax(np.abs(pcm) > 3000) + 1600 :][:3200]
    assert tone_power(window, 16_000, 440) > 100 * tone_power(window, 16_000, 1000)
