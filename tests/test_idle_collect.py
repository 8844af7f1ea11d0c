"""Once the last peer has closed, its libav codec thread pools go: the process's native threads
come back to baseline without waiting for Python's next full collection (automatic GC is off
here, so only the server's own idle collection can free the sessions' reference cycles)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from pathlib import Path
from typing import Any

from qa.audio import ToneTrack
from qa.client import LivecoachClient
from server.app import make_app
from server.auth import issue_token
from server.practice import CoachHooks
from tests.fakes.openai_server import FakeOpenAI
from tests.test_practice import practice_settings


def native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def test_threads_back_to_baseline_after_the_last_peer(aiohttp_server: Any, tmp_path: Path) -> None:
    async with FakeOpenAI(reply="Sure, it is gentle.", stt_text="Does it suit sensitive skin?") as fake:
        settings = practice_settings(tmp_path, fake.base_url)
        hooks = CoachHooks(settings)
        server = await aiohttp_server(make_app(settings, hooks=hooks))
        base = str(server.make_url("")).rstrip("/")

        async def one_session(i: int) -> None:
            token = issue_token(settings.server.secret, f"idle-{i}", "trainee", f"u{i}", 600)
            async with LivecoachClient(settings.media, name=f"u{i}") as client:
                await client.connect(base, token, scenario="skincare-sensitive-en")
                await client.publish(audio=ToneTrack(440), recv_audio=True)
                await asyncio.sleep(0.5)  # media flows: codecs and their pools exist
                await client.leave()
                await client.wait_for("session_ended", timeout=20)

        await one_session(-1)  # warm-up: lazily created pools exist from here on
        gc.collect()
        baseline = native_threads()
        gc.disable()
        try:
            for i in range(3):
                await one_session(i)
            deadline = time.monotonic() + 30
            while native_threads() > baseline + 2:
                assert time.monotonic() < deadline, (native_threads(), baseline)
                await asyncio.sleep(0.1)
        finally:
            gc.enable()
