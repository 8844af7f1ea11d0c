"""A mentor's flood is refused at the mentor: the streamer stays connected and gets a trickle."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from qa.client import LivecoachClient
from server.app import make_app
from server.auth import issue_token
from server.settings import load_settings

SECRET = "flood-test-secret"


def token(room: str, role: str, user: str) -> str:
    return issue_token(SECRET, room, role, user, 60)


async def test_tip_and_whisper_flood_spares_the_streamer(aiohttp_server, tmp_path: Path) -> None:
    settings = load_settings(server={"secret": SECRET, "data_dir": str(tmp_path)}, media={"ice_loopback_only": True})
    server = await aiohttp_server(make_app(settings))
    base = str(server.make_url("")).rstrip("/")
    async with LivecoachClient(name="streamer") as streamer, LivecoachClient(name="mentor") as mentor:
        await streamer.connect(base, token("flood", "streamer", "star"))
        await mentor.connect(base, token("flood", "mentor", "coach"))
        started = time.monotonic()
        for i in range(2000):  # the probe's flood: 2,000 tips, then 2,000 whisper toggles
            await mentor.send_raw(json.dumps({"type": "tip", "text": f"tip {i}"}))
        for i in range(2000):
            await mentor.send_raw(json.dumps({"type": "whisper", "on": i % 2 == 0}))
        limited = await mentor.wait_for("error", lambda m: m["reason"] == "rate_limited", timeout=10)
        assert "tip" in limited["message"] or "whisper" in limited["message"]
        rtt_ms = await streamer.ping(timeout=10)  # the streamer is still connected and served
        assert rtt_ms >= 0 and not streamer.closed
        await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        tips = streamer.messages("tip")
        rate, burst = settings.server.message_rates["tip"]
        assert 1 <= len(tips) <= burst + rate * elapsed + 1
        assert not mentor.closed  # limited, not disconnected
