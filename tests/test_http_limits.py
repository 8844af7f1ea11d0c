"""HTTP hardening of a served process: slow or idle connections are closed, tokens stay out of logs."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from server.app import make_app
from server.serving import http_runner_options
from server.settings import load_settings


async def start(tmp_path: Path, **server: object) -> tuple[web.AppRunner, int]:
    settings = load_settings(server={"data_dir": str(tmp_path), **server})
    runner = web.AppRunner(make_app(settings), **http_runner_options(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def test_half_sent_headers_are_cut_off(tmp_path: Path) -> None:
    runner, port = await start(tmp_path, http_idle_timeout_s=0.5)
    try:
        slow = []
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
            await writer.drain()
            slow.append((reader, writer))
        started = time.perf_counter()
        for reader, _writer in slow:
            # The server closes: read returns EOF (or the socket resets). Generous bound: the
            # point is "closed by the server", not how fast.
            assert await asyncio.wait_for(reader.read(), timeout=30) == b""
        assert time.perf_counter() - started < 30
        for _reader, writer in slow:
            writer.close()
        # ... and the server still answers a whole request.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), timeout=30)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await runner.cleanup()


async def test_access_log_has_no_query_string(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runner, port = await start(tmp_path)
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz?token=SECRET-TOKEN-VALUE HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await asyncio.wait_for(reader.read(), timeout=30)
            writer.close()
            await asyncio.sleep(0)
    finally:
        await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any("/healthz" in line for line in lines)
    assert not any("SECRET-TOKEN-VALUE" in line for line in lines)


async def test_rest_is_rate_limited_per_address(aiohttp_server, tmp_path: Path) -> None:
    settings = load_settings(server={"data_dir": str(tmp_path), "rest_rate": (1.0, 5.0)})
    server = await aiohttp_server(make_app(settings))
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(8):
            async with http.get(server.make_url("/api/scenarios")) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert resp.headers["Retry-After"] and (await resp.json())["error"] == "rate_limited"
        assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
        async with http.get(server.make_url("/healthz")) as resp:  # health is not REST: never limited
            assert resp.status == 200
