"""Production mode (dev_tokens off): the REST API needs a token, and trainees see only their own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from server.app import STATE, make_app
from server.auth import issue_token
from server.settings import load_settings


async def test_api_needs_a_token_and_trainees_read_only_their_own(aiohttp_server: Any, tmp_path: Path) -> None:
    settings = load_settings()
    settings.server.data_dir = str(tmp_path)
    settings.server.dev_tokens = False
    secret = settings.server.secret
    app = make_app(settings)
    server = await aiohttp_server(app)
    store = app[STATE].store
    for sid, user in (("s-ann", "ann"), ("s-ben", "ben")):
        await store.save_session({"session_id": sid, "user": user, "room": "r", "kind": "practice",
                                  "started_at": time.time()})
    ann = issue_token(secret, "r", "trainee", "ann", 600)
    mentor = issue_token(secret, "r", "mentor", "mia", 600)
    forged = ann[:-2] + ("AA" if not ann.endswith("AA") else "BB")

    async def status(path: str, token: str | None = None, header: bool = True) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token and header else {}
        params = {"token": token} if token and not header else {}
        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url(path), headers=headers, params=params) as resp:
                return resp.status

    assert await status("/api/clock") == 200 and await status("/api/scenarios") == 200
    assert await status("/healthz") == 200
    assert await status("/api/sessions/s-ann") == 401
    assert await status("/api/sessions/s-ann", forged) == 401
    assert await status("/api/sessions/s-ann", ann) == 200
    assert await status("/api/sessions/s-ann/events", ann, header=False) == 200
    assert await status("/api/sessions/s-ben", ann) == 403
    assert await status("/api/sessions", ann) == 403  # listing everyone
    assert await status("/api/sessions?user=ann", ann) == 200
    assert await status("/api/trainees/ben/progress", ann) == 403
    assert await status("/api/export/sessions.csv?user=ann", ann) == 200
    assert await status("/api/sessions/s-ben", mentor) == 200
    assert await status("/api/sessions", mentor) == 200
    assert await status("/api/dev/token") in (404, 405)  # dev tokens are off
    # Presence: a query parameter must not widen what the token allows (hostile-client finding).
    in_other_room = issue_token(secret, "other", "trainee", "bob", 600)
    assert await status("/api/rooms/r", in_other_room) == 403
    assert await status("/api/rooms/r?user=bob", in_other_room) == 403
    assert await status("/api/rooms/r?user=ann", in_other_room) == 403
    # A member and a mentor are authorized (the room is empty, so: not found, not forbidden).
    assert await status("/api/rooms/r", ann) == 404
    assert await status("/api/rooms/r", mentor) == 404
    assert await status("/api/sessions/s-ben?user=ann", ann) == 403  # the record's user decides

    # Health: anyone learns ok/status; the process id and counts only with a mentor/QA token.
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url("/healthz")) as resp:
            public = await resp.json()
        async with http.get(server.make_url("/healthz"), headers={"Authorization": f"Bearer {mentor}"}) as resp:
            detailed = await resp.json()
        async with http.get(server.make_url("/healthz"), headers={"Authorization": f"Bearer {ann}"}) as resp:
            as_trainee = await resp.json()
    assert public["ok"] is True and public["status"] == "ok" and "process_id" not in public
    assert "process_id" not in as_trainee
    assert detailed["process_id"] and detailed["agents"] == 0 and detailed["threads"] >= 1
