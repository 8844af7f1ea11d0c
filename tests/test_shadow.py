"""Mentor shadowing: live audio/video relay, tips with acks, 1v1 rule, push-to-talk whisper."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamTrack

from qa.audio import SyntheticVideoTrack, ToneTrack, decode_frame_counter
from qa.client import ClientError, LivecoachClient
from qa.detect import tone_power
from server.app import make_app
from server.auth import issue_token
from server.settings import load_settings

SECRET = "shadow-test-secret"
STREAM_HZ = 440.0
WHISPER_HZ = 1000.0
TONE_MIN = 0.005  # ToneTrack(amplitude 0.3) gives ~0.045 after Opus; silence gives ~0


def tone(freq_hz: float) -> ToneTrack:
    track = ToneTrack(freq_hz)
    track.sounding = True  # ToneTrack starts silent
    return track


def power(pcm: np.ndarray, freq_hz: float) -> float:
    """Median tone power over 20 ms windows: robust to the phase jumps of relayed/concealed frames."""
    windows = pcm[: pcm.size // 960 * 960].reshape(-1, 960)
    return float(np.median([tone_power(w, 48_000, freq_hz) for w in windows]))


def token(room: str, role: str, user: str) -> str:
    return issue_token(SECRET, room, role, user, 60)


@pytest.fixture
async def base_url(aiohttp_server, tmp_path: Path) -> str:
    settings = load_settings(server={"secret": SECRET, "data_dir": str(tmp_path)}, media={"ice_loopback_only": True})
    server = await aiohttp_server(make_app(settings))
    return str(server.make_url("")).rstrip("/")


async def capture(track: MediaStreamTrack, seconds: float, skip_s: float = 0.0) -> np.ndarray:
    """Mono int16 at 48 kHz of the next ``seconds`` of live audio (after skipping ``skip_s`` of wall time,
    which also flushes frames queued before the call)."""
    skip_until = time.monotonic() + skip_s
    while time.monotonic() < skip_until:
        await asyncio.wait_for(track.recv(), 2)
    chunks: list[np.ndarray] = []
    samples = 0
    while samples < seconds * 48_000:
        frame = await asyncio.wait_for(track.recv(), 2)
        pcm = frame.to_ndarray().reshape(-1)
        channels = len(frame.layout.channels)
        mono = pcm[::channels] if channels > 1 else pcm
        chunks.append(mono)
        samples += mono.size
    return np.concatenate(chunks)


def mono(frame: object) -> np.ndarray:
    pcm = frame.to_ndarray().reshape(-1)  # type: ignore[attr-defined]
    channels = len(frame.layout.channels)  # type: ignore[attr-defined]
    return pcm[::channels] if channels > 1 else pcm


async def until_tone(track: MediaStreamTrack, freq_hz: float, present: bool, timeout: float = 8.0) -> float:
    """Read live frames until 10 in a row have (or lack) the tone; returns the seconds it took.
    Generous timeout: the machine is shared, so the loop may stall for a while."""
    start = time.monotonic()
    run = 0
    while run < 10:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"tone {freq_hz} Hz {'never came' if present else 'never stopped'} in {timeout} s")
        frame = await asyncio.wait_for(track.recv(), 3)
        has = tone_power(mono(frame), 48_000, freq_hz) > TONE_MIN
        run = run + 1 if has == present else 0
    return time.monotonic() - start


async def live_video_counters(track: MediaStreamTrack, n: int) -> list[int]:
    """Counters of the next ``n`` non-black frames (black filler has counter 0)."""
    counters: list[int] = []
    deadline = time.monotonic() + 10
    while len(counters) < n and time.monotonic() < deadline:
        frame = await asyncio.wait_for(track.recv(), 3)
        value = decode_frame_counter(frame)
        if value > 0:
            counters.append(value)
    return counters


async def start_streamer(base_url: str, room: str) -> LivecoachClient:
    client = LivecoachClient(name="streamer")
    await client.connect(base_url, token(room, "streamer", "star"))
    await client.publish(audio=tone(STREAM_HZ), video=SyntheticVideoTrack(), recv_audio=True)
    return client


async def start_mentor(base_url: str, room: str) -> LivecoachClient:
    client = LivecoachClient(name="mentor")
    await client.connect(base_url, token(room, "mentor", "coach"))
    await client.publish(audio=tone(WHISPER_HZ), recv_audio=True, recv_video=True)
    return client


@pytest.mark.parametrize("mentor_first", [False, True])
async def test_mentor_sees_and_hears_streamer(base_url: str, mentor_first: bool) -> None:
    room = f"shadow-{int(mentor_first)}"
    if mentor_first:
        mentor = await start_mentor(base_url, room)
        streamer = await start_streamer(base_url, room)
    else:
        streamer = await start_streamer(base_url, room)
        mentor = await start_mentor(base_url, room)
    try:
        assert mentor.received_audio is not None and mentor.received_video is not None
        await until_tone(mentor.received_audio, STREAM_HZ, present=True)
        pcm = await capture(mentor.received_audio, 0.6)
        assert power(pcm, STREAM_HZ) > TONE_MIN
        assert power(pcm, WHISPER_HZ) < TONE_MIN / 10  # the mentor never hears itself

        counters = await live_video_counters(mentor.received_video, 5)
        assert len(counters) == 5 and counters == sorted(counters)

        # tip → streamer → ack → mentor
        tip_id = await mentor.tip("Mention the 20% coupon")
        tip = await streamer.wait_for("tip", lambda m: m["tip_id"] == tip_id, timeout=5)
        assert tip["text"] == "Mention the 20% coupon" and tip["from"] == "coach"
        assert tip["sent_at_ms"] == pytest.approx(time.time() * 1000, abs=5000)
        await streamer.ack(tip_id)
        acked = await mentor.wait_for("tip_acked", lambda m: m["tip_id"] == tip_id, timeout=5)
        assert 0 < acked["rtt_ms"] < 10_000 and 0 < acked["delivery_ms"] <= acked["rtt_ms"]  # figures: bench
        one_way_ms = (tip["_recv_ns"] - tip["server_ns"]) / 1e6  # same monotonic clock on one machine
        assert 0 < one_way_ms < 10_000

        # 1v1: a second mentor is refused
        with pytest.raises(ClientError) as err:
            async with LivecoachClient(name="mentor2") as second:
                await second.connect(base_url, token(room, "mentor", "coach2"))
        assert err.value.reason == "room_full"

        # the tip is in the session's event log
        session_id = streamer.joined["session_id"]  # type: ignore[index]
        import aiohttp

        async with aiohttp.ClientSession() as http:
            for _ in range(50):
                async with http.get(f"{base_url}/api/sessions/{session_id}/events?type=tip") as resp:
                    events = await resp.json()
                if events:
                    break
                await asyncio.sleep(0.05)
        assert [e["tip_id"] for e in events] == [tip_id]

        # streamer leaves: mentor is told the session ended
        await streamer.close()
        ended = await mentor.wait_for("session_ended", timeout=5)
        assert ended["session_id"] == session_id
    finally:
        await mentor.close()
        await streamer.close()


async def test_whisper_reaches_streamer_only_while_on(base_url: str) -> None:
    room = "whisper"
    streamer = await start_streamer(base_url, room)
    mentor = await start_mentor(base_url, room)
    try:
        assert streamer.received_audio is not None
        off = await capture(streamer.received_audio, 0.5, skip_s=0.4)
        assert power(off, WHISPER_HZ) < TONE_MIN / 10

        state = await mentor.whisper(True)
        assert state["on"] is True
        assert (await streamer.wait_for("whisper", timeout=5))["on"] is True
        await until_tone(streamer.received_audio, WHISPER_HZ, present=True)
        on = await capture(streamer.received_audio, 0.5)
        assert power(on, WHISPER_HZ) > TONE_MIN
        assert power(on, STREAM_HZ) < TONE_MIN / 10  # no echo of the streamer itself

        await mentor.whisper(False)
        await until_tone(streamer.received_audio, WHISPER_HZ, present=False)
        off_again = await capture(streamer.received_audio, 0.5)
        assert power(off_again, WHISPER_HZ) < TONE_MIN / 10

        # the mentor still hears the streamer all along
        assert mentor.received_audio is not None
        await until_tone(mentor.received_audio, STREAM_HZ, present=True)
        heard = await capture(mentor.received_audio, 0.4)
        assert power(heard, STREAM_HZ) > TONE_MIN
    finally:
        await mentor.close()
        await streamer.close()
