"""A failed answer tears the practice pipeline down: threads, fds, tasks and agents back to baseline."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from qa.client import ClientError, LivecoachClient, offer_without_direction
from server.app import make_app
from server.auth import issue_token
from server.practice import CoachHooks
from tests.fakes.openai_server import FakeOpenAI
from tests.test_practice import practice_settings


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def settle(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "did not settle"
        await asyncio.sleep(0.05)


async def test_failed_answers_leave_nothing_alive(aiohttp_server: Any, tmp_path: Path) -> None:
    async with FakeOpenAI(reply="Hello.", stt_text="hi") as fake:
        settings = practice_settings(tmp_path, fake.base_url)
        hooks = CoachHooks(settings)
        server = await aiohttp_server(make_app(settings, hooks=hooks))
        base = str(server.make_url("")).rstrip("/")
        sdp = await offer_without_direction()

        async def one_failed_offer(i: int) -> None:
            token = issue_token(settings.server.secret, f"bad-{i}", "trainee", f"t{i}", 600)
            async with LivecoachClient(settings.media, name=f"t{i}") as client:
                await client.connect(base, token, scenario="skincare-sensitive-en")
                try:
                    await client.request({"type": "offer", "sdp": sdp}, "answer", timeout=20)
                except ClientError as exc:
                    assert exc.reason == "bad_sdp"
                else:
                    raise AssertionError("an offer without a direction was answered")

        await one_failed_offer(-1)  # warm-up: lazily created pools and threads exist from here on
        await settle(lambda: hooks.live_sessions == 0)
        threads, fds = threading.active_count(), open_fds()
        for i in range(100):
            await one_failed_offer(i)
        await settle(lambda: hooks.live_sessions == 0)
        await settle(lambda: threading.active_count() <= threads + 2)
        assert open_fds() <= fds + 10
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as resp:
                health = await resp.json()
        assert health["agents"] == 0 and health["peers"] == 0 and health["sessions"] == 0
