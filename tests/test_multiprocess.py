"""Two real `livecoach serve` processes sharing one Redis: a room owned by A, joined through B.

The streamer sends a tone + synthetic video to process A; the mentor's WebSocket is on process B,
which routes its join/offer/tip over the Redis bus to A (the room's owner). SIGKILL of A must
free the room in Redis within the presence TTL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from media.settings import MediaSettings
from qa.audio import SyntheticVideoTrack, ToneTrack, decode_frame_counter
from qa.client import LivecoachClient
from qa.detect import tone_power
from server.auth import issue_token
from server.store import RedisStore

ROOT = Path(__file__).resolve().parent.parent
SECRET = "multiprocess-test-secret"
PRESENCE_TTL_S = 2.0
PREFIX = "livecoach"  # the app's store prefix; keys are cleaned by room / session / process id

pytestmark = pytest.mark.redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m server serve` on a free port; logs to a file (a full pipe would stall it)."""

    def __init__(self, name: str, data_dir: Path, redis_url: str, **env: str) -> None:
        self.name = name
        self.port = free_port()
        self.process_id = f"{name}-{uuid.uuid4().hex[:8]}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"{name}.log"
        self.env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "LIVECOACH_SERVER__SECRET": SECRET,
            "LIVECOACH_SERVER__DATA_DIR": str(data_dir),
            "LIVECOACH_SERVER__PRESENCE_TTL_S": str(PRESENCE_TTL_S),
            "LIVECOACH_MEDIA__ICE_LOOPBACK_ONLY": "true",
            "LIVECOACH_MEDIA__RECORD_AUDIO": "false",
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--process-id", self.process_id, "--log-level", "WARNING",
                cwd=ROOT, env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200 and (await resp.json())["ok"]:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not healthy in {timeout} s:\n{self.log()}")
                await asyncio.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful shutdown), SIGKILL if it hangs; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
                return None
        return self.proc.returncode


async def wipe_keys(redis_url: str, rooms: list[str], sessions: list[str], users: list[str],
                    process_ids: list[str]) -> None:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        keys = [f"{PREFIX}:{k}:{p}" for p in process_ids for k in ("proc", "metrics")]
        keys += [f"{PREFIX}:room:{r}:{k}" for r in rooms for k in ("owner", "presence")]
        keys += [f"{PREFIX}:{k}:{s}" for s in sessions for k in ("events", "session")]
        keys += [f"{PREFIX}:sessions:user:{u}" for u in users]
        await client.delete(*keys)
        if rooms:
            await client.zrem(f"{PREFIX}:rooms", *rooms)
        if sessions:
            await client.zrem(f"{PREFIX}:sessions", *sessions)
    finally:
        await client.aclose()


@pytest.fixture
async def servers(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    probe = aioredis.from_url(redis_url)
    try:
        await asyncio.wait_for(probe.ping(), 2)
    finally:
        await probe.aclose()
    a = ServerProcess("A", tmp_path / "a", redis_url)
    b = ServerProcess("B", tmp_path / "b", redis_url)
    for s in (a, b):
        (tmp_path / s.name.lower()).mkdir()
    try:
        await asyncio.gather(a.start(), b.start())
        yield a, b
    finally:
        a.kill()
        await asyncio.gather(a.stop(), b.stop())


async def _wait_tone(track, freq_hz: float, timeout: float) -> int:
    """Read frames until one carries ``freq_hz`` clearly; returns how many frames were read."""
    deadline = time.monotonic() + timeout
    frames = 0
    while time.monotonic() < deadline:
        frame = await asyncio.wait_for(track.recv(), timeout)
        frames += 1
        pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1).astype(np.int16)
        if tone_power(pcm, frame.sample_rate, freq_hz) > 0.005:  # 0.3-amplitude sine gives ~0.045
            return frames
    raise AssertionError(f"no {freq_hz} Hz tone within {timeout} s")


async def _wait_video(track, timeout: float) -> list[int]:
    """Counters of the first frames whose counter has moved on (the relay shows black until then)."""
    counters: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(counters) < 5:
        frame = await asyncio.wait_for(track.recv(), timeout)
        value = decode_frame_counter(frame)
        if value > 0:
            counters.append(value)
    assert len(counters) >= 5, f"no live streamer video within {timeout} s (got {counters})"
    return counters


async def test_room_spans_two_processes_and_dies_with_its_owner(
    servers: tuple[ServerProcess, ServerProcess], redis_url: str
) -> None:
    a, b = servers
    room = f"mp-{uuid.uuid4().hex[:8]}"
    streamer_user, mentor_user = f"st-{uuid.uuid4().hex[:6]}", f"mn-{uuid.uuid4().hex[:6]}"
    media = MediaSettings(ice_loopback_only=True)
    streamer = LivecoachClient(media, name="streamer")
    mentor = LivecoachClient(media, name="mentor")
    redis = aioredis.from_url(redis_url, decode_responses=True)
    store = RedisStore(redis_url, PREFIX)
    sessions: list[str] = []
    tone = ToneTrack(440.0)
    video = SyntheticVideoTrack()
    try:
        joined = await streamer.connect(a.url, issue_token(SECRET, room, "streamer", streamer_user, 600))
        sessions.append(joined["session_id"])
        assert await redis.get(f"{PREFIX}:room:{room}:owner") == a.process_id
        await streamer.publish(audio=tone, video=video, recv_audio=True)
        tone.sounding = True

        # The mentor's socket is on B; B routes to A, the owner, over the Redis bus.
        m_joined = await mentor.connect(b.url, issue_token(SECRET, room, "mentor", mentor_user, 600))
        assert m_joined["room"] == room and m_joined["role"] == "mentor"
        assert {p["user"] for p in m_joined["participants"]} == {streamer_user, mentor_user}
        await streamer.wait_for("participant_joined", lambda m: m.get("user") == mentor_user, timeout=5)
        await mentor.publish(audio=ToneTrack(880.0), recv_audio=True, recv_video=True)  # whisper off: silent
        assert mentor.received_audio is not None and mentor.received_video is not None
        await _wait_tone(mentor.received_audio, 440.0, timeout=10)
        counters = await _wait_video(mentor.received_video, timeout=10)
        assert counters == sorted(counters)

        # The B process only relays; the room (and its peers) live on A.
        async with aiohttp.ClientSession() as http:
            async with http.get(a.url + "/healthz") as r:
                health_a = await r.json()
            async with http.get(b.url + "/healthz") as r:
                health_b = await r.json()
        assert health_a["rooms"] == 1 and health_a["peers"] == 2
        assert health_b["rooms"] == 0 and health_b["connections"] == 1
        presence = {p["user"]: p for p in await store.presence(room)}
        assert presence[mentor_user]["role"] == "mentor" and presence[streamer_user]["role"] == "streamer"

        # A tip round-trips mentor (B) → streamer (A) → mentor (B).
        t0 = time.perf_counter_ns()
        tip_id = await mentor.tip("show the price tag")
        tip = await streamer.wait_for("tip", lambda m: m.get("tip_id") == tip_id, timeout=5)
        assert tip["text"] == "show the price tag" and tip["from"] == mentor_user
        await streamer.ack(tip_id)
        acked = await mentor.wait_for("tip_acked", lambda m: m.get("tip_id") == tip_id, timeout=5)
        round_trip_ms = (time.perf_counter_ns() - t0) / 1e6
        assert 0 < acked["rtt_ms"] < 10_000 and round_trip_ms < 20_000  # bounds; figures: bench_signalling

        # A dies without cleanup: its room and presence vanish from Redis within the TTL.
        a.kill()
        killed = time.monotonic()
        await a.proc.wait()  # type: ignore[union-attr]
        # (presence written after A's last heartbeat may outlive the owner key by < TTL/3)
        while await store.room_owner(room) is not None or await store.presence(room):
            assert time.monotonic() - killed < PRESENCE_TTL_S + 1.0, "room outlived its owner's TTL"
            await asyncio.sleep(0.05)
        freed_s = time.monotonic() - killed
        assert not await redis.exists(f"{PREFIX}:proc:{a.process_id}")
        assert room not in await store.list_rooms()
        # B notices the owner is gone and tells the mentor to rejoin.
        lost = await mentor.wait_for("error", lambda m: m.get("reason") == "room_lost", timeout=PRESENCE_TTL_S + 3)
        assert lost["reason"] == "room_lost"
        print(f"tip round trip {round_trip_ms:.1f} ms, room freed {freed_s:.2f} s after SIGKILL")
    finally:
        tone.stop()
        video.stop()
        await mentor.close()
        await streamer.close()
        await redis.aclose()
        await store.close()
        await wipe_keys(redis_url, [room], sessions, [streamer_user, mentor_user], [a.process_id, b.process_id])
    assert await b.stop() == 0, b.log()



def _sample(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return sample.value
    return None


async def test_cluster_metrics_sum_every_live_worker(servers: tuple[ServerProcess, ServerProcess],
                                                     redis_url: str) -> None:
    """/metrics is the answering process's; ?scope=cluster adds up every live worker's snapshot."""
    a, b = servers
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(a.url + "/ws")]
        sockets += [await http.ws_connect(b.url + "/ws") for _ in range(2)]
        try:
            async with http.get(a.url + "/metrics") as resp:
                assert _sample(await resp.text(), "livecoach_ws_connections") == 1.0
            # B publishes its snapshot with its heartbeat (TTL/3); snapshots of processes that
            # ended before this test expire within the TTL: wait for exactly these two.
            deadline = time.monotonic() + 10 * PRESENCE_TTL_S
            while True:
                async with http.get(a.url + "/metrics", params={"scope": "cluster"}) as resp:
                    assert resp.status == 200
                    text = await resp.text()
                if (_sample(text, "livecoach_workers"), _sample(text, "livecoach_ws_connections")) == (2.0, 3.0):
                    break
                assert time.monotonic() < deadline, text
                await asyncio.sleep(PRESENCE_TTL_S / 3)
            async with http.get(a.url + "/metrics", params={"scope": "everything"}) as resp:
                assert resp.status == 400
        finally:
            for ws in sockets:
                await ws.close()
    await wipe_keys(redis_url, [], [], [], [a.process_id, b.process_id])
