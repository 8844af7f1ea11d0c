"""WebSockets that never join: closed on wall time (whatever pings/pongs flow), and capped."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from server.app import make_app
from server.settings import load_settings
from server.state import STATE


def app_for(tmp_path: Path, **server: object):
    return make_app(load_settings(server={"data_dir": str(tmp_path), **server}))


async def test_join_deadline_holds_while_heartbeats_flow(aiohttp_server, tmp_path: Path) -> None:
    # Heartbeat every 200 ms: before the fix each PONG restarted aiohttp's receive timeout.
    server = await aiohttp_server(app_for(tmp_path, join_timeout_s=1.0, ws_heartbeat_s=0.2))
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.make_url("/ws"), autoping=True) as ws:
            error = await asyncio.wait_for(ws.receive(), timeout=30)
            assert json.loads(error.data)["reason"] == "join_timeout"
            closing = await asyncio.wait_for(ws.receive(), timeout=30)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            # 4401 normally; on a loaded machine the client's own pong may come late and the
            # heartbeat closes first (1006) — the join_timeout error above proves the deadline fired.
            assert ws.close_code in (4401, 1006)


async def test_a_thousand_idle_sockets_are_closed_by_the_deadline(aiohttp_server, tmp_path: Path) -> None:
    app = app_for(tmp_path, join_timeout_s=1.0, max_unjoined_connections=2000, max_unjoined_per_address=2000)
    server = await aiohttp_server(app)
    state = app[STATE]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = await asyncio.gather(*(http.ws_connect(server.make_url("/ws")) for _ in range(1000)))
        assert 0 < state.unjoined.total <= 1000  # the first may already have expired

        async def closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
            while True:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return ws.close_code

        codes = await asyncio.wait_for(asyncio.gather(*(closed(ws) for ws in sockets)), timeout=120)
        assert len(codes) == 1000 and all(ws.closed for ws in sockets)
        assert 4401 in codes  # the deadline's close (a late client pong may make some 1006)
    for _ in range(200):  # the handlers' cleanup runs after the close frames
        if state.unjoined.total == 0 and not state.connections:
            break
        await asyncio.sleep(0.05)
    assert state.unjoined.total == 0 and not state.connections


async def test_unjoined_sockets_are_capped_per_address(aiohttp_server, tmp_path: Path) -> None:
    app = app_for(tmp_path, join_timeout_s=30, max_unjoined_per_address=3)
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as http:
        held = [await http.ws_connect(server.make_url("/ws")) for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(server.make_url("/ws"))
        assert refused.value.status == 429
        await held[0].close()
        for _ in range(200):
            if app[STATE].unjoined.total == 2:
                break
            await asyncio.sleep(0.02)
        again = await http.ws_connect(server.make_url("/ws"))  # a slot was freed
        for ws in [*held[1:], again]:
            await ws.close()
