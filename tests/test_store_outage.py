"""Redis goes away: health says degraded, REST answers 503 with a JSON reason (no bare 500)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest

from server.app import make_app
from server.settings import load_settings

pytestmark = pytest.mark.redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_redis_outage_degrades_health_and_rest(aiohttp_server, tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is needed (apt-get install redis-server)")
    port = free_port()
    # A private Redis, so stopping it disturbs nobody else's tests.
    redis = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
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
