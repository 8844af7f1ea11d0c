"""No session outlives its participants: quick close-then-rejoin cycles each end their session."""

from __future__ import annotations

import asyncio
from pathlib import Path

from qa.client import LivecoachClient
from server.app import make_app
from server.auth import issue_token
from server.settings import load_settings
from server.state import STATE

SECRET = "rejoin-test-secret"


async def test_quick_rejoins_end_every_session(aiohttp_server, tmp_path: Path) -> None:
    settings = load_settings(server={"secret": SECRET, "data_dir": str(tmp_path)}, media={"ice_loopback_only": True})
    app = make_app(settings)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    tok = issue_token(SECRET, "rejoin", "trainee", "tia", 600)
    previous: LivecoachClient | None = None
    for _ in range(60):
        client = LivecoachClient(name="tia")
        if previous is not None:
            # Close and rejoin at once: the old session ends while the new one begins.
            closing = asyncio.ensure_future(previous.close())
            await asyncio.sleep(0)
            for _attempt in range(100):  # the room may still hold the old trainee for a moment
                try:
                    await client.connect(base, tok, timeout=5)
                    break
                except Exception:  # noqa: BLE001 - room_full while the old one leaves
                    await client.close()
                    client = LivecoachClient(name="tia")
                    await asyncio.sleep(0.01)
            await closing
        else:
            await client.connect(base, tok, timeout=5)
        previous = client
    assert previous is not None
    await previous.close()
    state = app[STATE]
    for _ in range(200):
        if not state.manager.rooms:
            break
        await asyncio.sleep(0.05)
    sessions = await state.store.list_sessions(user="tia", limit=200)
    assert len(sessions) == 60
    still_live = [s["session_id"] for s in sessions if s.get("status") != "ended"]
    assert still_live == []
    for record in sessions:
        ended = await state.store.events(record["session_id"], ["session_ended"])
        assert len(ended) == 1, record["session_id"]
