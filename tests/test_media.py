"""Media layer over real aiortc peers on 127.0.0.1 (two RTCPeerConnections in one process)."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from coach.contracts import AudioOutput
from media.inbound import InboundAudio
from media.outbound import PacedAudioTrack
from media.peer import (
    close_quietly,
    connect_in_process,
    create_peer_connection,
    get_jitter_prefetch,
    set_jitter_prefetch,
    use_loopback_ice,
)
from media.recorder import SessionRecorder
from media.relay import ShadowRelay, SwitchableTrack
from media.settings import MediaSettings
from qa.audio import SyntheticVideoTrack, ToneTrack, WavFileTrack, decode_frame_counter
from qa.detect import ReceivedAudioMonitor, level_dbfs, tone_power


@pytest.fixture(autouse=True)
def _stock_prefetch():
    use_loopback_ice()
    yield
    set_jitter_prefetch(4)


async def _wait_for(cond, timeout: float = 5.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


class _Pair:
    """A sends ``track`` to B; B runs InboundAudio into ``chunks`` and a ReceivedAudioMonitor."""

    def __init__(self, track, prefetch: int = 4, rate: int = 16_000) -> None:
        self.settings = MediaSettings(jitter_prefetch=prefetch, ice_loopback_only=True)
        self.a = create_peer_connection(self.settings)
        self.b = create_peer_connection(self.settings)
        self.a.addTrack(track)
        self.rate = rate
        self.chunks: list[tuple[np.ndarray, int]] = []
        self.detector = ReceivedAudioMonitor(on_dbfs=-30, hold_ms=60)
        self.inbound: InboundAudio | None = None
        self.remote_track = None

        @self.b.on("track")
        def _on_track(remote) -> None:
            self.remote_track = remote
            self.inbound = InboundAudio(remote, self._on_pcm, sample_rate=rate)
            self.inbound.start()

    def _on_pcm(self, pcm: np.ndarray, t_ns: int) -> None:
        self.chunks.append((pcm, t_ns))
        self.detector.feed_audio(pcm, t_ns, sample_rate=self.rate)

    async def __aenter__(self) -> "_Pair":
        await connect_in_process(self.a, self.b)
        await _wait_for(lambda: self.a.connectionState == "connected" and self.inbound is not None)
        await _wait_for(lambda: self.inbound.stats["frames"] > 5)
        return self

    async def __aexit__(self, *exc) -> None:
        if self.inbound is not None:
            await self.inbound.stop()
        await close_quietly(self.a)
        await close_quietly(self.b)


async def _one_way_delays(prefetch: int, bursts: int = 5) -> list[float]:
    tone = ToneTrack(freq_hz=1000, amplitude=0.5)
    async with _Pair(tone, prefetch=prefetch) as pair:
        receiver = pair.b.getTransceivers()[0].receiver
        assert receiver._RTCRtpReceiver__jitter_buffer._prefetch == prefetch
        await asyncio.sleep(0.3)
        await tone.play_bursts(bursts, on_s=0.2, off_s=0.3)
        await asyncio.sleep(0.3)
        rx = pair.detector.onsets
    assert len(rx) >= bursts - 1, (tone.onsets_ns, rx)  # the bursts were heard, each as one onset
    delays = []
    for tx in tone.onsets_ns:
        after = [r for r in rx if r >= tx]
        if after and after[0] - tx < 480e6:  # bursts start 500 ms apart
            delays.append((after[0] - tx) / 1e6)
    return delays


# ---- peer ---------------------------------------------------------------------------------


async def test_peer_connection_has_no_public_stun_and_closes_quietly():
    pc = create_peer_connection(MediaSettings())
    assert pc._RTCPeerConnection__configuration.iceServers == []  # no public STUN
    track = ToneTrack()
    pc.addTrack(track)
    await close_quietly(pc)
    assert pc.connectionState == "closed"
    assert track.readyState == "ended"
    await close_quietly(pc)  # twice is fine
    await close_quietly(None)


async def test_set_jitter_prefetch_validates_and_is_idempotent():
    with pytest.raises(ValueError):
        set_jitter_prefetch(0)
    set_jitter_prefetch(2)
    set_jitter_prefetch(2)
    assert get_jitter_prefetch() == 2
    pc = create_peer_connection(MediaSettings(jitter_prefetch=1))
    try:
        transceiver = pc.addTransceiver("audio")
        buffer = transceiver.receiver._RTCRtpReceiver__jitter_buffer
        assert buffer._prefetch == 1
        video = pc.addTransceiver("video").receiver._RTCRtpReceiver__jitter_buffer
        assert video._prefetch == 0  # video untouched
    finally:
        await close_quietly(pc)


async def test_tone_a_to_b_arrives_at_16k_through_inbound_audio():
    tone = ToneTrack(freq_hz=440, amplitude=0.3)
    async with _Pair(tone) as pair:
        tone.sounding = True
        await asyncio.sleep(0.6)
        tone.sounding = False
        await asyncio.sleep(0.3)
        stats = dict(pair.inbound.stats)
    assert pair.detector.onsets, "no tone onset detected at B"
    pcm = np.concatenate([c for c, _ in pair.chunks])
    # 20 ms at 48 kHz → 320 samples at 16 kHz per frame
    assert {c.size for c, _ in pair.chunks[5:]} <= {320, 640, 960}
    loud = pcm[np.abs(pcm) > 3000]
    assert loud.size > 16_000 * 0.3
    # the received audio is the 440 Hz tone, not noise
    window = pcm[np.argmax(np.abs(pcm) > 3000) + 1600 :][:4800]
    assert tone_power(window, 16_000, 440) > 100 * tone_power(window, 16_000, 1000)
    # 0.3 FS sine is -13.5 dB; aiortc's encoder upmixes mono to stereo at -3 dB (center mix level)
    assert -18 < 10 * np.log10(tone_power(window, 16_000, 440)) < -15
    assert stats["frames"] >= 40  # smooth arrival (no >100 ms gaps) is a bench figure: bench_media


async def test_prefetch_reaches_the_receiver_and_bursts_arrive():
    # The receiving jitter buffer uses the configured prefetch, and every tone burst arrives
    # (checked in _one_way_delays). How much delay each prefetch adds (~60 ms idle for 4 vs 1)
    # is a speed figure: bench/bench_media.py, not a bound a loaded machine must meet.
    for prefetch in (1, 4):
        delays = await _one_way_delays(prefetch)
        assert all(d >= 0 for d in delays), delays


# ---- outbound -----------------------------------------------------------------------------


async def test_paced_audio_track_frames_are_20ms_and_paced():
    track = PacedAudioTrack()
    assert isinstance(track, AudioOutput)
    frames = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        frames.append(await track.recv())
    elapsed = time.perf_counter() - t0
    assert {f.samples for f in frames} == {960}
    assert {f.sample_rate for f in frames} == {48_000}
    assert frames[-1].pts - frames[0].pts == 960 * (len(frames) - 1)
    # Paced: never faster than real time (a loaded machine may make it slower; the rate is a
    # bench figure, not a test bound).
    assert len(frames) <= elapsed / 0.020 + 3, (len(frames), elapsed)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_paced_audio_track_playout_bookkeeping():
    seen: list[tuple[str | None, int]] = []
    track = PacedAudioTrack(on_frame=lambda uid, pcm, t: seen.append((uid, pcm.size)))
    pcm = (np.ones(48 * 110) * 1000).astype(np.int16)  # 110 ms at 48 kHz
    track.push("u1", pcm[: 48 * 50].tobytes(), 48_000)
    track.push("u1", pcm[48 * 50 :].tobytes(), 48_000)
    assert track.queued_ms() == pytest.approx(110)
    assert track.playout("u1").queued_ms == pytest.approx(110)
    frames = [await track.recv() for _ in range(2)]
    p = track.playout("u1")
    assert p.sent_ms == pytest.approx(40) and not p.done and p.first_frame_ns is not None
    # not ended and less than a frame left after 5 frames: waits (silence), no padding mid-speech
    for _ in range(4):
        frames.append(await track.recv())
    assert track.playout("u1").sent_ms == pytest.approx(100)
    assert seen[-1][0] is None  # underrun frame is silence
    track.end("u1")
    frames.append(await track.recv())  # 10 ms tail + 10 ms padding
    p = track.playout("u1")
    assert p.sent_ms == pytest.approx(110) and p.done and p.queued_ms == 0
    assert p.last_frame_ns >= p.first_frame_ns
    tail = frames[-1].to_ndarray().reshape(-1)
    assert (tail[:480] == 1000).all() and (tail[480:] == 0).all()
    assert track.playout("unknown").sent_ms == 0
    assert all(n == 960 for _, n in seen)
    track.stop()


async def test_flush_drops_queue_and_reports_ms():
    track = PacedAudioTrack()
    tts = (np.sin(np.arange(24_000) / 10) * 8000).astype(np.int16)  # 1 s at 24 kHz
    track.push("u1", tts.tobytes(), 24_000)
    assert 980 <= track.queued_ms() <= 1000  # resampler holds back a few samples until end()
    for _ in range(5):
        await track.recv()
    t = time.perf_counter_ns()
    dropped = track.flush()
    flush_us = (time.perf_counter_ns() - t) / 1000
    assert 880 <= dropped <= 900
    assert track.queued_ms() == 0
    p = track.playout("u1")
    assert p.sent_ms == pytest.approx(100) and p.done
    track.push("u1", tts.tobytes(), 24_000)  # late TTS chunk of the flushed utterance: dropped
    assert track.queued_ms() == 0 and track.stats["dropped_pushes"] == 1
    frame = await track.recv()
    assert level_dbfs(frame.to_ndarray()) == -np.inf
    assert flush_us < 100_000  # sanity only: the speed figure lives in bench/bench_media.py
    track.push("u2", tts.tobytes(), 24_000)
    track.end("u2")
    assert track.queued_ms() == pytest.approx(1000)
    with pytest.raises(ValueError):
        track.push("u3", b"\x00", 16_000)
    with pytest.raises(ValueError):
        track.push("u3", b"\x00\x00", 100)
    track.stop()


async def test_paced_track_over_a_peer_connection_is_heard_and_flushed():
    track = PacedAudioTrack()
    async with _Pair(track, prefetch=2) as pair:
        tone = (np.sin(2 * np.pi * 440 * np.arange(48_000) / 48_000) * 10_000).astype(np.int16)
        track.push("r1", tone.tobytes(), 48_000)
        await pair.detector.wait_onset(0, timeout_s=10)  # the tone is being heard
        dropped_ms = track.flush()
        await pair.detector.wait_offset(0, timeout_s=10)
    assert len(pair.detector.onsets) == 1 and len(pair.detector.offsets) == 1
    heard_ms = (pair.detector.offsets[0] - pair.detector.onsets[0]) / 1e6
    # What the flush dropped was never heard: B hears at most the part that went out (+ jitter
    # buffer and detector hold slack), however long the loop took to get to the flush.
    assert dropped_ms > 0
    assert heard_ms <= 1000 - dropped_ms + 250, (heard_ms, dropped_ms)


# ---- relay --------------------------------------------------------------------------------


async def test_switchable_track_silence_source_silence():
    out = SwitchableTrack("audio")
    t0 = time.perf_counter()
    silent = [await out.recv() for _ in range(10)]
    assert time.perf_counter() - t0 >= 0.15  # paced 20 ms: never faster than real time
    assert all(level_dbfs(f.to_ndarray()) == -np.inf for f in silent)
    assert {(f.samples, f.sample_rate, f.layout.name) for f in silent} == {(960, 48_000, "mono")}
    tone = ToneTrack(freq_hz=440)
    tone.sounding = True
    out.set_source(tone)
    loud = [await out.recv() for _ in range(5)]
    assert all(level_dbfs(f.to_ndarray()) > -20 for f in loud)
    tone.stop()  # source ends → silence again
    after = [await out.recv() for _ in range(3)]
    assert out.source is None
    assert all(level_dbfs(f.to_ndarray()) == -np.inf for f in after)
    pts = [f.pts for f in silent + loud + after]
    assert pts == [960 * i for i in range(len(pts))]  # continuous timestamps across switches
    with pytest.raises(ValueError):
        out.set_source(SyntheticVideoTrack())
    video = SwitchableTrack("video")
    black = await video.recv()
    assert (black.width, black.height) == (320, 240)
    assert int(black.to_ndarray(format="yuv420p")[:240].mean()) == 16
    out.stop()
    video.stop()


async def test_switchable_track_wakes_on_switch_while_source_stalls():
    class Stalled(ToneTrack):
        async def recv(self):
            await asyncio.sleep(3600)

    out = SwitchableTrack("audio")
    out.set_source(Stalled())
    pending = asyncio.ensure_future(out.recv())
    await asyncio.sleep(0.05)
    out.set_source(None)
    frame = await asyncio.wait_for(pending, 5)  # bounded: without the wake-up it would wait an hour
    assert level_dbfs(frame.to_ndarray()) == -np.inf
    out.stop()


async def test_switchable_track_over_peer_connection():
    out = SwitchableTrack("audio")
    tone = ToneTrack(freq_hz=440)
    tone.sounding = True
    async with _Pair(out) as pair:
        await asyncio.sleep(0.3)
        assert not pair.detector.onsets  # silence so far
        out.set_source(tone)
        await asyncio.sleep(0.4)
        out.set_source(None)
        await asyncio.sleep(0.4)
    assert len(pair.detector.onsets) == 1 and len(pair.detector.offsets) == 1
    tone.stop()


async def test_shadow_relay_fans_out_latest_frame_only():
    source = SyntheticVideoTrack(fps=50)
    relay = ShadowRelay()
    fast = relay.subscribe(source)
    slow = relay.subscribe(source)
    first_fast = decode_frame_counter(await fast.recv())
    first_slow = decode_frame_counter(await slow.recv())
    assert abs(first_fast - first_slow) <= 1
    for _ in range(20):
        await fast.recv()  # slow consumer reads nothing meanwhile
    latest_fast = decode_frame_counter(await fast.recv())
    latest_slow = decode_frame_counter(await slow.recv())
    assert latest_slow >= latest_fast - 1  # latest frame, not the 20 it missed
    assert slow._queue is None  # unbuffered proxy: nothing can pile up
    buffered = relay.subscribe(source, buffered=True)
    await buffered.recv()
    await relay.close()
    with pytest.raises(MediaStreamError):
        await fast.recv()
    source.stop()


async def test_shadow_relay_to_two_peer_connections():
    tone = ToneTrack(freq_hz=440)
    relay = ShadowRelay()
    out1, out2 = SwitchableTrack("audio"), SwitchableTrack("audio")
    out1.set_source(relay.subscribe(tone))
    out2.set_source(relay.subscribe(tone))
    async with _Pair(out1) as p1, _Pair(out2) as p2:
        tone.sounding = True
        await asyncio.sleep(0.4)
        tone.sounding = False
        await asyncio.sleep(0.3)
    await relay.close()
    tone.stop()
    assert len(p1.detector.onsets) == 1 and len(p2.detector.onsets) == 1
    assert abs(p1.detector.onsets[0] - p2.detector.onsets[0]) < 60e6


# ---- tones --------------------------------------------------------------------------------


async def test_wav_file_track_and_onset_detector(fixtures_dir: Path):
    track = WavFileTrack(fixtures_dir / "en_interrupt.wav")
    detector = ReceivedAudioMonitor(on_dbfs=-45, hold_ms=300)
    n = 0
    while not track.idle or n < 10:
        frame = await track.recv()
        detector.feed_audio(frame.to_ndarray().reshape(-1), track._start_ns + n * 20_000_000, sample_rate=48_000)
        n += 1
        assert frame.samples == 960
    with wave.open(str(fixtures_dir / "en_interrupt.wav")) as w:
        duration = w.getnframes() / w.getframerate()
    assert abs(track.started_ns - track._start_ns) < 5_000_000
    onset_s = (detector.onsets[0] - track._start_ns) / 1e9
    offset_s = (detector.offsets[-1] - track._start_ns) / 1e9
    assert 0.95 <= onset_s <= 1.1
    # espeak's own output ends with ~0.1 s of silence, so speech stops a bit before duration-1.5
    assert duration - 1.9 <= offset_s <= duration - 1.45
    track.play(fixtures_dir / "en_interrupt.wav")
    assert not track.idle
    with pytest.raises(FileNotFoundError):
        WavFileTrack(fixtures_dir / "missing.wav")
    track.stop()


def test_tone_power_goertzel():
    sr = 16_000
    t = np.arange(sr // 10) / sr
    pcm = (np.sin(2 * np.pi * 440 * t) * 32767 * 0.5).astype(np.int16)
    assert tone_power(pcm, sr, 440) == pytest.approx(0.125, rel=0.02)
    assert tone_power(pcm, sr, 1000) < 1e-4
    assert tone_power(np.zeros(0, np.int16), sr, 440) == 0


# ---- recorder -----------------------------------------------------------------------------


async def test_recorder_writes_aligned_stereo_wav(tmp_path: Path):
    t0 = time.perf_counter_ns()
    rec = SessionRecorder(tmp_path / "s.wav", sample_rate=16_000, t0_ns=t0)
    sr = 16_000
    left = (np.sin(2 * np.pi * 440 * np.arange(sr) / sr) * 8000).astype(np.int16)  # 1 s at 0.5 s
    for i in range(50):
        rec.add_left(left[i * 320 : (i + 1) * 320], t0 + 500_000_000 + i * 20_000_000)
    right = (np.sin(2 * np.pi * 1000 * np.arange(48_000) / 48_000) * 8000).astype(np.int16)
    for i in range(50):  # 1 s at 48 kHz starting at 1.0 s, via the PacedAudioTrack callback
        rec.on_output_frame("u", right[i * 960 : (i + 1) * 960], t0 + 1_000_000_000 + i * 20_000_000)
    path = await rec.close()
    assert rec.duration_s == pytest.approx(2.0, abs=0.02)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, sr)
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    assert data.shape[0] / sr == pytest.approx(2.0, abs=0.02)
    l, r = data[:, 0], data[:, 1]
    assert level_dbfs(l[: int(0.49 * sr)]) == -np.inf
    assert tone_power(l[int(0.6 * sr) : int(1.4 * sr)], sr, 440) > 0.02
    assert level_dbfs(l[int(1.51 * sr) :]) == -np.inf
    assert np.abs(r[: int(0.99 * sr)]).max() == 0
    assert tone_power(r[int(1.1 * sr) : int(1.9 * sr)], sr, 1000) > 0.02
    assert tone_power(r[int(1.1 * sr) : int(1.9 * sr)], sr, 440) < 1e-4


async def test_recorder_places_replies_at_their_time_across_the_silence_between_them(tmp_path: Path):
    """The paced track's silence between replies (no utterance id) is not queued; the writer
    fills it with zeros, so each reply still lands where it was sent."""
    t0 = time.perf_counter_ns()
    rec = SessionRecorder(tmp_path / "gaps.wav", sample_rate=16_000, t0_ns=t0)
    sr, frame = 16_000, 960
    mic = (np.sin(2 * np.pi * 300 * np.arange(320) / sr) * 3000).astype(np.int16)
    reply = (np.sin(2 * np.pi * 1000 * np.arange(frame) / 48_000) * 8000).astype(np.int16)
    for i in range(125):  # 2.5 s: the trainee's side all along; the customer speaks at 1.0 and 2.0 s
        t = t0 + i * 20_000_000
        rec.add_left(mic, t)
        uid = "a" if 50 <= i < 60 else "b" if 100 <= i < 110 else None
        rec.on_output_frame(uid, reply if uid else np.zeros(frame, np.int16), t)
    await rec.close()
    with wave.open(str(tmp_path / "gaps.wav")) as w:
        r = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)[:, 1]
    voiced = np.flatnonzero(np.abs(r) > 4000)
    assert voiced[0] / sr == pytest.approx(1.0, abs=0.005)
    assert voiced[-1] / sr == pytest.approx(2.2, abs=0.005)
    assert np.abs(r[int(1.21 * sr) : int(1.99 * sr)]).max() == 0  # between the replies: silence
    assert tone_power(r[int(2.0 * sr) : int(2.2 * sr)], sr, 1000) > 0.02


async def test_recorder_from_live_inbound_and_outbound(tmp_path: Path):
    out = PacedAudioTrack()
    rec = SessionRecorder(tmp_path / "live.wav")
    out.on_frame = rec.on_output_frame
    tone = ToneTrack(freq_hz=440)
    async with _Pair(tone) as pair:
        pair.inbound.on_pcm = rec.add_left  # trainee side
        tone.sounding = True
        out.push("r", (np.ones(48_000 // 4) * 5000).astype(np.int16).tobytes(), 48_000)
        out.end("r")
        # Play the whole reply out, however slowly a loaded loop paces it (then a little silence).
        await asyncio.wait_for(_drain_until(out, lambda: out.playout("r").done), 20)
        await _drain(out, 0.2)
    path = await rec.close()
    assert rec.duration_s >= 0.4, rec.duration_s  # the 0.25 s reply and the silence drained after it
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    assert tone_power(data[:, 0], 16_000, 440) > 1e-3
    assert (np.abs(data[:, 1]) > 4000).sum() / 16_000 == pytest.approx(0.25, abs=0.03)
    out.stop()
    tone.stop()


async def _drain_until(track, done) -> None:
    while not done():
        await track.recv()


async def _drain(track, seconds: float) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await track.recv()


async def test_reply_start_does_not_wait_for_the_next_frame_slot():
    """While silence goes out, a reply's first frame leaves when it is ready, not at the next
    20 ms slot; later frames are paced from there."""
    track = PacedAudioTrack()
    frames: list[int] = []

    async def drain() -> None:
        while True:
            await track.recv()
            frames.append(time.perf_counter_ns())

    task = asyncio.create_task(drain())
    try:
        await asyncio.sleep(0.111)  # mid-slot, silence going out
        pushed_ns = time.perf_counter_ns()
        track.push("r", np.full(4_800, 3_000, dtype=np.int16).tobytes(), 48_000)  # 100 ms
        track.end("r")
        await asyncio.sleep(0.2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        track.stop()
    p = track.playout("r")
    # The reply started early (the code path), after the push; how early is a speed figure
    # (bench/bench_turns.py server overhead), not a bound a loaded machine must meet.
    assert track.stats["early_starts"] == 1 and p.done
    assert p.first_frame_ns >= pushed_ns
    after = [t for t in frames if t >= p.first_frame_ns]
    assert len(after) >= 5  # 100 ms of reply = 5 frames went out after the realigned start
