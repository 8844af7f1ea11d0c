"""media.allowed_candidate_networks: a client cannot point the server's STUN checks elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.audio import ToneTrack
from qa.client import ClientError, LivecoachClient
from server.app import make_app
from server.auth import issue_token
from server.settings import ConfigError, load_settings

SECRET = "ice-restrict-secret"


async def start(aiohttp_server, tmp_path: Path, networks: list[str]) -> str:
    settings = load_settings(server={"secret": SECRET, "data_dir": str(tmp_path)},
                             media={"ice_loopback_only": True, "allowed_candidate_networks": networks})
    server = await aiohttp_server(make_app(settings))
    return str(server.make_url("")).rstrip("/")


async def test_candidates_outside_the_allowed_networks_are_refused(aiohttp_server, tmp_path: Path) -> None:
    base = await start(aiohttp_server, tmp_path, ["192.0.2.0/24"])
    async with LivecoachClient(name="s") as client:
        await client.connect(base, issue_token(SECRET, "ice", "streamer", "s", 60))
        with pytest.raises(ClientError) as err:  # aiortc puts its 127.0.0.1 candidates in the offer
            await client.publish(audio=ToneTrack(440))
        assert err.value.reason == "bad_sdp" and "allowed_candidate_networks" in str(err.value)


async def test_allowed_networks_let_loopback_through(aiohttp_server, tmp_path: Path) -> None:
    base = await start(aiohttp_server, tmp_path, ["127.0.0.0/8"])
    async with LivecoachClient(name="s") as client:
        await client.connect(base, issue_token(SECRET, "ice2", "streamer", "s", 60))
        answer = await client.publish(audio=ToneTrack(440))
        assert answer["type"] == "answer"
        # A trickled candidate aimed elsewhere (e.g. a private service) is refused.
        with pytest.raises(ClientError) as err:
            await client.request({"type": "ice", "candidate": {
                "candidate": "candidate:1 1 udp 2130706431 10.1.2.3 6379 typ host",
                "sdpMid": "0", "sdpMLineIndex": 0}}, "no-such-reply", timeout=10)
        assert err.value.reason == "invalid_field" and "allowed_candidate_networks" in str(err.value)


def test_a_bad_network_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(media={"allowed_candidate_networks": ["not-a-network"]})
    assert "allowed_candidate_networks" in str(err.value)
