"""A shadow session's recording: the streamer's voice (left), the mentor's push-to-talk whisper
(right, only while whisper is on) and the camera, labelled so; muxed into one MP4 after the session
(off the loop); a failed mux leaves the separate files."""

from __future__ import annotations

import asyncio
import threading
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest

from media.mux import MuxAborted, RecordingMuxer, mux_audio_into_video
from qa.audio import SyntheticVideoTrack
from qa.client import LivecoachClient
from qa.detect import tone_power
from server.app import make_app
from server.auth import issue_token
from server.practice import CoachHooks, recordings_dir
from tests.fakes.openai_server import FakeOpenAI
from tests.test_practice import practice_settings, wait_record
from tests.test_shadow import STREAM_HZ, TONE_MIN, WHISPER_HZ, tone, until_tone

WINDOW_S = 0.04
BRIDGE = 5  # windows: 200 ms
HELD = 0.7  # share of a span's windows with its tone (a loaded machine's stalls leave holes in both channels)
SILENT = TONE_MIN / 10


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """(samples × 2 int16, rate) of a stereo WAV."""
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 2 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2), w.getframerate()


def powers(channel: np.ndarray, rate: int, freq_hz: float) -> np.ndarray:
    """Tone power per 40 ms window."""
    n = int(rate * WINDOW_S)
    windows = channel[: channel.size // n * n].reshape(-1, n)
    return np.array([tone_power(w, rate, freq_hz) for w in windows])


def runs(mask: np.ndarray, bridge: int = 0) -> list[tuple[int, int]]:
    """[start, end) of each run of True; runs at most ``bridge`` windows apart are merged."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.astype(np.int8), [0]))))
    merged: list[tuple[int, int]] = []
    for a, b in zip(edges[::2].tolist(), edges[1::2].tolist()):
        if merged and a - merged[-1][1] <= bridge:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def decode_audio(path: Path) -> tuple[np.ndarray, int, int]:
    """(samples × 2 int16, rate, video frames) of an MP4 with one audio and one video stream."""
    chunks, frames = [], 0
    with av.open(str(path)) as container:
        assert {s.type for s in container.streams} == {"audio", "video"}
        rate = container.streams.audio[0].rate
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=rate)
        for frame in container.decode(audio=0, video=0):
            if isinstance(frame, av.VideoFrame):
                frames += 1
                continue
            chunks += [f.to_ndarray().reshape(-1, 2) for f in resampler.resample(frame)]
    return np.concatenate(chunks), rate, frames


async def fetch(server: Any, path: str, timeout: float = 30.0) -> bytes:
    """GET ``path`` until 200 (the mux runs after the session, in the background)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(server.make_url(path)) as resp:
                if resp.status == 200:
                    assert resp.content_type == "video/mp4"
                    return await resp.read()
                assert resp.status == 404 and time.monotonic() < deadline, resp.status
            await asyncio.sleep(0.2)


async def test_recording_has_the_streamer_left_and_the_whisper_right(aiohttp_server: Any, tmp_path: Path) -> None:
    async with FakeOpenAI(stt_text="") as fake:  # the streamer's STT (a tone: nothing to transcribe)
        settings = practice_settings(tmp_path, fake.base_url)
        server = await aiohttp_server(make_app(settings, hooks=CoachHooks(settings)))
        url, secret = str(server.make_url("/")), settings.server.secret
        room = f"rec-{time.perf_counter_ns()}"
        async with LivecoachClient(settings.media, name="streamer") as streamer, \
                LivecoachClient(settings.media, name="mentor") as mentor:
            joined = await streamer.connect(url, issue_token(secret, room, "streamer", "sam", 600))
            camera, voice, whisper = SyntheticVideoTrack(), tone(STREAM_HZ), tone(WHISPER_HZ)
            await streamer.publish(audio=voice, video=camera, recv_audio=True)
            await mentor.connect(url, issue_token(secret, room, "mentor", "mia", 600))
            await mentor.publish(audio=whisper, recv_audio=True, recv_video=True)
            assert mentor.received_audio is not None and streamer.received_audio is not None
            await until_tone(mentor.received_audio, STREAM_HZ, present=True, timeout=15)
            await asyncio.sleep(1.0)  # whisper off: the right channel stays silent
            await mentor.whisper(True)
            await until_tone(streamer.received_audio, WHISPER_HZ, present=True, timeout=15)
            await asyncio.sleep(1.0)  # ~1.2 s of whisper the streamer heard
            voice.sounding = whisper.sounding = False  # both fall silent at once: the channels align
            await until_tone(streamer.received_audio, WHISPER_HZ, present=False, timeout=15)
            await asyncio.sleep(0.5)
            await mentor.whisper(False)  # silence is sent meanwhile; nothing after this either
            whisper.sounding = True
            await asyncio.sleep(1.0)
            await streamer.leave()
            await streamer.wait_for("session_ended", timeout=10)
            camera.stop()
        sid = joined["session_id"]
        record = await wait_record(server, sid, timeout=60)
        av_bytes = await fetch(server, f"/api/sessions/{sid}/av")
        async with aiohttp.ClientSession() as http:
            html_en = await (await http.get(server.make_url(f"/api/sessions/{sid}/report.html?lang=en"))).text()
            html_zh = await (await http.get(server.make_url(f"/api/sessions/{sid}/report.html?lang=zh"))).text()

    # Labels: the record says who is on each channel; the report words it in each language.
    assert record["kind"] == "shadow"
    assert record["recording_channels"] == {"left": "streamer", "right": "mentor"}
    assert "left: streamer, right: mentor (whisper)" in html_en
    assert "左声道：主播，右声道：导师（耳语）" in html_zh
    whispers = [e for e in record["report"]["timeline"] if e.get("kind") == "whisper"]
    assert len(whispers) == 1 and whispers[0]["from"] == "mia", whispers

    # The WAV: the streamer's tone on the left all along, never the whisper; the whisper on the
    # right in one span about as long as whisper was on, silence (no streamer) everywhere else.
    stereo, rate = read_wav(recordings_dir(settings) / record["recording"])
    left_stream, left_whisper = powers(stereo[:, 0], rate, STREAM_HZ), powers(stereo[:, 0], rate, WHISPER_HZ)
    right_stream, right_whisper = powers(stereo[:, 1], rate, STREAM_HZ), powers(stereo[:, 1], rate, WHISPER_HZ)
    # A loop stall on this shared machine may cost the live path a frame or two (the relay keeps
    # the latest frame): holes up to 200 ms inside a span are tolerated, not more.
    voiced = runs(left_stream > TONE_MIN, bridge=BRIDGE)
    assert voiced, "the streamer's tone is not on the left"
    first, last = voiced[0][0], voiced[-1][1]
    print(f"recording {stereo.shape[0] / rate:.2f} s, streamer {first * WINDOW_S:.2f}-{last * WINDOW_S:.2f} s,"
          f" whisper on for {whispers[0]['duration_s']} s")
    assert np.mean(left_stream[first:last] > TONE_MIN) > HELD, "the streamer's tone has holes on the left"
    assert np.all(left_stream[last + 3:] < SILENT), "the streamer's tone went on after it stopped"
    assert np.all(left_whisper < SILENT), "the whisper leaked into the left channel"
    assert np.all(right_stream < SILENT), "the streamer leaked into the right channel"
    print("whisper on the right (s):",
          [(round(a * WINDOW_S, 2), round(b * WINDOW_S, 2)) for a, b in runs(right_whisper > TONE_MIN)])
    spans = runs(right_whisper > TONE_MIN, bridge=BRIDGE)
    assert len(spans) == 1, spans
    longest = spans[0]
    assert np.mean(right_whisper[longest[0]:longest[1]] > TONE_MIN) > HELD, "the whisper has holes"
    span_s = (longest[1] - longest[0]) * WINDOW_S
    assert 0.8 <= span_s <= whispers[0]["duration_s"] + 0.5, (span_s, whispers)
    outside = np.ones(right_whisper.size, dtype=bool)
    outside[max(0, longest[0] - 3): longest[1] + 3] = False  # 120 ms either side for the edges
    assert np.all(right_whisper[outside] < SILENT), "whisper on the right while it was off"
    assert longest[0] - first > 0.5 / WINDOW_S, "the whisper span began before whisper was turned on"
    # Both tones stopped at the same instant: on the server's clock (each stamped at receipt) they
    # end together in the file (loopback: the two paths differ by a few frames).
    skew_s = (longest[1] - last) * WINDOW_S
    print(f"whisper ends {skew_s * 1000:+.0f} ms from the streamer's voice")
    assert abs(skew_s) <= 0.25, skew_s

    # One MP4: the camera and both voices, the same as the WAV.
    av_path = tmp_path / "av.mp4"
    av_path.write_bytes(av_bytes)
    muxed, av_rate, video_frames = decode_audio(av_path)
    assert video_frames > 10 and av_rate == rate
    assert abs(muxed.shape[0] - stereo.shape[0]) / rate < 0.2
    assert np.mean(powers(muxed[:, 0], rate, STREAM_HZ)[first + 5:last - 5] > TONE_MIN) > HELD
    av_whisper = powers(muxed[:, 1], rate, WHISPER_HZ) > TONE_MIN
    assert abs(int(av_whisper.sum()) - int((right_whisper > TONE_MIN).sum())) <= 5
    assert np.all(powers(muxed[:, 1], rate, STREAM_HZ) < SILENT)


def _wav(path: Path, seconds: float, rate: int = 16_000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    left = (np.sin(2 * np.pi * STREAM_HZ * t) * 8000).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.column_stack((left, np.zeros_like(left))).tobytes())
    return path


async def test_a_failed_mux_leaves_the_separate_files(tmp_path: Path) -> None:
    wav = _wav(tmp_path / "s.wav", 1.0)
    video = tmp_path / "s.mp4"
    video.write_bytes(b"not an mp4 at all" * 100)
    out = tmp_path / "s.av.mp4"
    muxer = RecordingMuxer()
    try:
        task = muxer.submit(video, wav, out, 0.2)
        assert task is not None and await task is None
    finally:
        await muxer.close()
    assert muxer.failed == 1 and not out.exists() and not (tmp_path / "s.av.mp4.part").exists()
    assert wav.stat().st_size > 16_000 and video.stat().st_size == 1700
    assert muxer.submit(video, wav, out, 0.2) is None  # closed: nothing starts


def test_an_aborted_mux_writes_nothing(tmp_path: Path) -> None:
    wav = _wav(tmp_path / "s.wav", 2.0)
    video = tmp_path / "s.mp4"
    with av.open(str(video), "w") as container:
        stream: Any = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((72, 64), i, dtype=np.uint8), format="yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    out = tmp_path / "s.av.mp4"
    abort = threading.Event()
    abort.set()
    with pytest.raises(MuxAborted):
        mux_audio_into_video(video, wav, out, 0.0, abort)
    assert not out.exists() and not (tmp_path / "s.av.mp4.part").exists()
    assert mux_audio_into_video(video, wav, out, 0.5) == out  # not aborted: written
    muxed, rate, frames = decode_audio(out)
    assert frames == 30 and rate == 16_000 and abs(muxed.shape[0] / rate - 2.0) < 0.1
