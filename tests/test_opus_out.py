"""OpusPacedTrack: the customer's voice as ready Opus packets (encoded inline, cached silence)."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusEncoder
from aiortc.mediastreams import MediaStreamError
from pydantic import ValidationError

from media.opus_out import OpusPacedTrack, output_track, silence_packet
from media.outbound import PacedAudioTrack
from media.peer import close_quietly, connect_in_process, create_peer_connection, set_jitter_prefetch
from media.settings import MediaSettings

TONE_HZ = 1000.0
AMP = 8000
LOOKAHEAD = 312  # libopus VoIP/audio delay at 48 kHz: decoded sound lags its packet by this


def _tone(ms: int, rate: int = 48_000) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * TONE_HZ * t) * AMP).astype(np.int16)


def _peak_hz(x: np.ndarray, rate: int = 48_000) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.size)))
    return float(np.argmax(spectrum) * rate / x.size)


@pytest.fixture(autouse=True)
def _stock_prefetch():
    yield
    set_jitter_prefetch(4)


# ---- the track alone ------------------------------------------------------------------------------


async def test_recv_returns_packets_and_never_encodes_silence(monkeypatch) -> None:
    track = OpusPacedTrack()
    encoded: list[int] = []
    real = track._encode
    monkeypatch.setattr(track, "_encode", lambda pcm, pts: encoded.append(pts) or real(pcm, pts))
    packer, packets = OpusEncoder(), []

    async def recv(n: int) -> None:
        for _ in range(n):
            packet = await track.recv()
            assert isinstance(packet, av.Packet)
            packets.append(packet)

    await recv(10)  # idle
    assert encoded == [] and {bytes(p) for p in packets} == {silence_packet()}
    # 100 ms tone, 60 ms of digital zeros inside the same utterance (a TTS pause), 100 ms tone
    pcm = np.concatenate([_tone(100), np.zeros(2880, np.int16), _tone(100)])
    track.push("u1", pcm.tobytes(), 48_000)
    track.end("u1")
    await recv(30)
    sizes = [p.size for p in packets]
    # speech: 5 encoded frames + the lookahead tail, zeros: 2 cached silences, speech again + tail
    assert len(encoded) == 12, sizes
    assert min(sizes[10:15]) > 20  # sizes[15]: zeros through the encoder, the first tone's tail
    assert sizes[16:18] == [3, 3] and min(sizes[18:23]) > 20
    assert sizes[24:] == [3] * 16
    assert len(silence_packet()) <= 8
    # one packet per frame, pts continuous in 1/48000 and what aiortc's sender stamps on RTP
    for i, packet in enumerate(packets):
        assert packet.pts == i * 960 and packet.time_base == fractions.Fraction(1, 48_000)
        payloads, timestamp = packer.pack(packet)
        assert timestamp == i * 960 and payloads == [bytes(packet)]
    assert track.stats["encoded"] == 12 and track.stats["silent_packets"] == 28
    done = track.playout("u1")
    assert done.done and done.sent_ms == pytest.approx(260)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


def test_settings_pick_and_validate_the_track() -> None:
    assert isinstance(output_track(MediaSettings()), OpusPacedTrack)
    classic = output_track(MediaSettings(output_opus_inline=False, output_frame_ms=30))
    assert type(classic) is PacedAudioTrack
    for bad in ({"output_frame_ms": 30}, {"opus_bitrate": 1000}, {"opus_complexity": 11},
                {"output_sample_rate": 16_000}):
        with pytest.raises(ValidationError):
            MediaSettings(**bad)
    track = output_track(MediaSettings(opus_bitrate=16_000, opus_complexity=0, output_frame_ms=10))
    assert isinstance(track, OpusPacedTrack) and track.samples_per_frame == 480
    with pytest.raises(ValueError):
        OpusPacedTrack(frame_ms=30)


# ---- over real peers --------------------------------------------------------------------------


async def test_tone_over_real_peers_with_cached_silence_and_flush() -> None:
    settings = MediaSettings(jitter_prefetch=1, ice_loopback_only=True)
    track = OpusPacedTrack.from_settings(settings)
    sent: list[tuple[int, int]] = []  # pts, payload size of what the sender packed
    real_recv = track.recv

    async def recording_recv() -> av.Packet:
        packet = await real_recv()
        sent.append((packet.pts, packet.size))
        return packet

    track.recv = recording_recv  # type: ignore[method-assign]  # the sender reads this attribute
    a, b = create_peer_connection(settings), create_peer_connection(settings)
    a.addTrack(track)
    rtp: list[tuple[int, int, int]] = []  # sequence number, timestamp, payload size as received
    decoded: dict[int, np.ndarray] = {}  # decoded pts → samples (the left channel if stereo)
    reader: asyncio.Task[None] | None = None

    @b.on("track")
    def _on_track(remote) -> None:
        nonlocal reader
        receiver = next(t.receiver for t in b.getTransceivers() if t.kind == "audio")
        original = receiver._handle_rtp_packet

        async def tap(packet, arrival_time_ms: int) -> None:
            rtp.append((packet.sequence_number, packet.timestamp, len(packet.payload)))
            await original(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = tap

        async def read() -> None:
            while True:
                frame = await remote.recv()
                pcm = frame.to_ndarray().reshape(-1)
                decoded[frame.pts] = (pcm[::2] if len(frame.layout.channels) == 2 else pcm).copy()

        reader = asyncio.create_task(read())

    try:
        await connect_in_process(a, b)
        await _until(lambda: len(decoded) > 10)
        track.push("hello", _tone(600).tobytes(), 48_000)
        track.end("hello")
        await asyncio.wait_for(track.wait_done("hello"), 5)
        await _until(lambda: _quiet_for(sent, 10))
        track.push("long", _tone(3000).tobytes(), 48_000)
        await _until(lambda: track.playout("long").sent_ms >= 300)
        flushed_at = track._pts  # the next frame's pts: no tone from here on (but the tail)
        assert track.flush() > 1000
        await _until(lambda: sent[-1][0] > flushed_at + 15 * 960 and len(decoded) >= len(rtp) - 2)
    finally:
        await close_quietly(a)
        await close_quietly(b)
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    # one packet per 20 ms, timestamps continuous on the wire; silence 3 bytes, speech much larger
    assert [p for p, _ in sent] == [i * 960 for i in range(len(sent))]
    seqs, stamps = [s for s, _, _ in rtp], [t for _, t, _ in rtp]
    assert all((b2 - b1) & 0xFFFF == 1 for b1, b2 in zip(seqs, seqs[1:])), "lost or reordered packets"
    assert all((t2 - t1) & 0xFFFFFFFF == 960 for t1, t2 in zip(stamps, stamps[1:]))
    first_speech = next(p for p, size in sent if size > 8)
    origin = (next(ts for _, ts, size in rtp if size > 8) - first_speech) & 0xFFFFFFFF  # RTP = origin + pts
    by_pts = dict(sent)
    for _, ts, size in rtp:
        assert by_pts[(ts - origin) & 0xFFFFFFFF] == size
    assert {size for _, size in sent if size <= 8} == {len(silence_packet())} == {3}
    # the decoded stream, laid out by sender pts (aiortc counts decoded pts from the first packet)
    first = (rtp[0][1] - origin) & 0xFFFFFFFF
    ordered = sorted((first + pts, pcm) for pts, pcm in decoded.items())
    start = ordered[0][0]
    assert [p for p, _ in ordered] == list(range(start, start + 960 * len(ordered), 960)), "a decoded gap"
    audio = np.concatenate([pcm for _, pcm in ordered])

    def at(pts: int) -> int:
        return pts - start

    onset = int(np.argmax(np.abs(audio) > AMP / 4))
    assert abs(onset - at(first_speech + LOOKAHEAD)) < 240, (onset, at(first_speech))
    hello = audio[at(first_speech) + LOOKAHEAD : at(first_speech) + LOOKAHEAD + 28_800]
    assert abs(_peak_hz(hello) - TONE_HZ) < 5
    assert min(np.abs(hello[i : i + 960]).max() for i in range(480, hello.size - 960, 960)) > AMP / 2  # no gap
    assert np.abs(audio[: at(first_speech)]).max() < 50  # silence before: digital silence decoded
    gap = audio[at(first_speech) + 28_800 + 2 * 960 : at(first_speech) + 28_800 + 10 * 960]
    assert np.abs(gap).max() < 50  # silence after the reply (past the lookahead tail)
    second = next(p for p, size in sent if p > first_speech + 28_800 and size > 8)
    long = audio[at(second) + LOOKAHEAD : at(flushed_at)]
    assert long.size >= 14_400 - LOOKAHEAD and abs(_peak_hz(long) - TONE_HZ) < 5
    assert np.abs(audio[at(flushed_at) + 2 * 960 :]).max() < 50  # flush() stopped it
    assert [size for p, size in sent if p >= flushed_at + 960] == [3] * len([p for p, _ in sent if p >= flushed_at + 960])


def _quiet_for(sent: list[tuple[int, int]], n: int) -> bool:
    return len(sent) >= n and all(size <= 8 for _, size in sent[-n:])


async def _until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
