"""Redis goes away: health says degraded, REST answers 503 with a JSON reason (no bare 500)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from qa.client import LivecoachClient
from server.app import make_app
from server.auth import issue_token
from server.settings import load_settings
from server.state import STATE

pytestmark = pytest.mark.redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is needed (apt-get install redis-server)")
    return subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)


async def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("redis did not start")


async def test_redis_outage_degrades_health_and_rest(aiohttp_server, tmp_path: Path) -> None:
    port = free_port()
    redis = start_redis(port, tmp_path)  # a private Redis: stopping it disturbs nobody else's tests
    try:
        url = f"redis://127.0.0.1:{port}/0"
        await wait_port(port)
        settings = load_settings(server={"data_dir": str(tmp_path), "redis_url": url})
        server = await aiohttp_server(make_app(settings))
        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/healthz")) as resp:
                assert (await resp.json())["status"] == "ok"
            async with http.get(server.make_url("/api/sessions")) as resp:
                assert resp.status == 200
            redis.terminate()
            redis.wait(timeout=10)
            async with http.get(server.make_url("/healthz")) as resp:
                health = await resp.json()
            assert health["status"] == "degraded" and health["ok"] is False and health["store_ok"] is False
            async with http.get(server.make_url("/api/sessions")) as resp:
                assert resp.status == 503
                assert (await resp.json())["error"] == "store_unavailable"
                assert resp.headers.get("Retry-After")
    finally:
        if redis.poll() is None:
            redis.kill()
        redis.wait(timeout=10)


async def test_a_session_that_ends_during_an_outage_keeps_its_record(aiohttp_server, tmp_path: Path) -> None:
    port = free_port()
    redis = start_redis(port, tmp_path)
    try:
        await wait_port(port)
        settings = load_settings(server={"data_dir": str(tmp_path), "redis_url": f"redis://127.0.0.1:{port}/0",
                                         "secret": "outage-secret"})
        app = make_app(settings)
        server = await aiohttp_server(app)
        base = str(server.make_url("")).rstrip("/")
        async with LivecoachClient(name="oli") as trainee:
            await trainee.connect(base, issue_token("outage-secret", "out", "trainee", "oli", 600))
            session_id = trainee.joined["session_id"]
            redis.terminate()
            redis.wait(timeout=10)
            await trainee.leave()  # the session ends while Redis is away
            await trainee.wait_for("session_ended", timeout=20)
        store = app[STATE].store
        for _ in range(100):  # the room's event writer and the record saver reach the spool
            if store.spooled >= 2:
                break
            await asyncio.sleep(0.05)
        assert store.spooled >= 2
        redis = start_redis(port, tmp_path)  # back, and (no persistence) empty
        await wait_port(port)
        record = None
        for _ in range(600):  # the room's removal may still be timing out on the dead connection
            record = await store.get_session(session_id)
            if record is not None and record.get("status") == "ended" and store.spooled == 0:
                break
            await asyncio.sleep(0.05)
        assert record is not None and record["status"] == "ended" and record["user"] == "oli"
        assert [e["type"] for e in await store.events(session_id, ["session_ended"])] == ["session_ended"]
    finally:
        if redis.poll() is None:
            redis.kill()
        redis.wait(timeout=10)
