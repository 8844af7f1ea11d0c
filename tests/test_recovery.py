"""kill -9 leaves sessions live: the next start finishes them (status, end time, recording, report)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from media.wav_repair import repair_wav_header
from qa.audio import ToneTrack
from qa.client import LivecoachClient
from server.auth import issue_token
from server.recovery import finalize_orphaned_sessions
from server.store.memory import MemoryStore
from tests.fakes.openai_server import FakeOpenAI
from tests.server_env import serve_env

ROOT = Path(__file__).resolve().parent.parent
SECRET = "recovery-test-secret-0123456789abcdefghij"


def broken_wav(path: Path, seconds: float = 1.0) -> None:
    """A WAV as a killed writer leaves it: samples on disk, header sizes still 0."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(int(16000 * seconds) * 2, dtype=np.int16).tobytes())
    with path.open("r+b") as f:
        f.seek(4)
        f.write(b"\0\0\0\0")
        f.seek(40)
        f.write(b"\0\0\0\0")


def test_wav_header_repair(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    broken_wav(path, 1.0)
    assert repair_wav_header(path)
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 16000


async def test_orphaned_live_sessions_are_finished(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path)
    await store.open()
    try:
        t0 = time.perf_counter_ns()
        await store.save_session({"session_id": "orphan1", "user": "u", "room": "r", "kind": "practice",
                                  "started_at": 1000.0, "status": "live", "process_id": "gone-1"})
        await store.save_session({"session_id": "done1", "user": "u", "room": "r2", "kind": "practice",
                                  "started_at": 900.0, "status": "ended"})
        await store.append_event("orphan1", {"type": "session_config", "t_ns": t0, "wall_s": 1000.5,
                                             "session_id": "orphan1"})
        await store.append_event("orphan1", {"type": "transcript", "t_ns": t0 + 30 * 10**9,
                                             "session_id": "orphan1"})
        (tmp_path / "recordings").mkdir()
        broken_wav(tmp_path / "recordings" / "orphan1.wav")
        finished = await finalize_orphaned_sessions(store, tmp_path / "recordings")
        assert finished == ["orphan1"]
        record = await store.get_session("orphan1")
        assert record is not None
        assert record["status"] == "ended" and record["end_reason"] == "server_lost"
        assert record["ended_at"] == 1030.5 and record["duration_s"] == 30.5
        assert record["recording"] == "orphan1.wav"
        assert (await store.get_session("done1") or {}).get("end_reason") is None  # untouched
    finally:
        await store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(data: Path, port: int, fake_url: str) -> subprocess.Popen[str]:
    env = {**serve_env(), "LIVECOACH_SERVER__DATA_DIR": str(data),
           "LIVECOACH_SERVER__SECRET": SECRET, "LIVECOACH_MEDIA__ICE_LOOPBACK_ONLY": "true",
           "LIVECOACH_COACH__GREET": "false", "LIVECOACH_COACH__PROVIDERS__STT": "openai",
           "LIVECOACH_COACH__PROVIDERS__LLM": "openai", "LIVECOACH_COACH__PROVIDERS__TTS": "openai",
           "LIVECOACH_COACH__PROVIDERS__OPENAI__BASE_URL": fake_url,
           "LIVECOACH_COACH__PROVIDERS__OPENAI__API_KEY": "k"}
    return subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--log-level",
                             "warning"], env=env, cwd=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            text=True)


async def wait_up(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(600):
        try:
            async with http.get(f"{base}/healthz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("server did not start")


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.read()
        return resp.status, body


async def test_kill_9_then_restart_finishes_the_session(tmp_path: Path) -> None:
    async with FakeOpenAI(reply="Hello.", stt_text="hi") as fake, aiohttp.ClientSession() as http:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        first = serve(tmp_path, port, fake.base_url)
        try:
            await wait_up(http, base)
            async with LivecoachClient(name="kim") as trainee:
                await trainee.connect(base, issue_token(SECRET, "crash", "trainee", "kim", 600),
                                      scenario="skincare-sensitive-en")
                tone = ToneTrack(440)
                tone.on = True
                await trainee.publish(audio=tone, recv_audio=True)
                session_id = trainee.joined["session_id"]
                await asyncio.sleep(1.5)  # some audio reaches the recorder
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
        second = serve(tmp_path, port, fake.base_url)
        try:
            await wait_up(http, base)
            status, record = await get(http, f"{base}/api/sessions/{session_id}")
            assert status == 200 and record["status"] == "ended" and record["end_reason"] == "server_lost"
            assert record["recording"] == f"{session_id}.wav"
            status, report = await get(http, f"{base}/api/sessions/{session_id}/report")
            assert status == 200 and report["session_id"] == session_id
            status, audio = await get(http, f"{base}/api/sessions/{session_id}/recording")
            assert status == 200 and len(audio) > 44
        finally:
            second.terminate()
            second.wait(timeout=30)
