"""/ws signalling: token checks, malformed input, role rules. Real server, real aiortc peers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from qa.audio import ToneTrack
from qa.client import ClientError, LivecoachClient
from server.app import make_app
from server.auth import issue_token
from server.settings import Settings, load_settings

SECRET = "signalling-test-secret"


def make_settings(tmp_path: Path, **server: object) -> Settings:
    return load_settings(
        server={"secret": SECRET, "data_dir": str(tmp_path), "max_sessions": 4, **server},
        media={"ice_loopback_only": True},
    )


def token(room: str, role: str, user: str, ttl_s: float = 60, secret: str = SECRET,
          issued_s_ago: float = 0.0) -> str:
    return issue_token(secret, room, role, user, ttl_s, now=time.time() - issued_s_ago)


@pytest.fixture
async def base_url(aiohttp_server, tmp_path: Path) -> str:
    server = await aiohttp_server(make_app(make_settings(tmp_path)))
    return str(server.make_url("")).rstrip("/")


async def _refused(base_url: str, tok: str, room: str | None = None) -> tuple[str, int | None]:
    client = LivecoachClient()
    try:
        with pytest.raises(ClientError) as err:
            await client.connect(base_url, tok, room=room, timeout=5)
        # the server closes with 4401 after the error
        for _ in range(50):
            if client.closed:
                break
            await asyncio.sleep(0.02)
        return err.value.reason, client.close_code
    finally:
        await client.close()


async def test_bad_tokens_refused_then_good_join_works(base_url: str) -> None:
    assert await _refused(base_url, token("r1", "trainee", "u", secret="forged")) == ("bad_token", 4401)
    assert await _refused(base_url, "not-a-token") == ("bad_token", 4401)
    assert await _refused(base_url, token("r1", "trainee", "u", ttl_s=60, issued_s_ago=61)) == ("token_expired", 4401)
    assert await _refused(base_url, token("r1", "trainee", "u"), room="r2") == ("wrong_room", 4401)
    async with LivecoachClient() as client:
        joined = await client.connect(base_url, token("r1", "trainee", "u"), room="r1")
        assert joined["room"] == "r1" and joined["role"] == "trainee" and len(joined["session_id"]) == 32


# (raw text, expected reason); sent before join
PRE_JOIN = [
    ("this is not json", "bad_json"),
    ('{"type": "join", ', "bad_json"),
    ("[" * 5000 + "]" * 5000, "bad_json"),
    ("[1, 2]", "not_object"),
    ('"join"', "not_object"),
    ("{}", "unknown_type"),
    ('{"type": "nope"}', "unknown_type"),
    ('{"type": 5}', "unknown_type"),
    ('{"type": "join"}', "invalid_field"),
    ('{"type": "join", "token": 42}', "invalid_field"),
    ('{"type": "join", "token": "x", "admin": true}', "invalid_field"),
    ('{"type": "join", "token": "x", "lang": "fr"}', "invalid_field"),
    ('{"type": "join", "token": "", "id": "a"}', "invalid_field"),
    (json.dumps({"type": "ping", "id": "x" * 65}), "invalid_field"),
    ('{"type": "ping", "t": NaN}', "invalid_field"),
    ('{"type": "ping", "t": 1}', "not_joined"),
    ('{"type": "offer", "sdp": "v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n"}', "not_joined"),
]

# sent after joining as trainee
POST_JOIN = [
    ('{"type": "offer", "sdp": "hello"}', "bad_sdp"),
    ('{"type": "offer", "sdp": ""}', "invalid_field"),
    ('{"type": "offer", "sdp": "v=0\\r\\nm=audio 9 garbage\\r\\n"}', "bad_sdp"),
    (json.dumps({"type": "offer", "sdp": "v=0\r\nm=" + "a" * 40_000}), "too_large"),
    ('{"type": "ice", "candidate": {"candidate": "foo", "sdpMid": "0"}}', "invalid_field"),
    ('{"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}}', "invalid_field"),
    ('{"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}}',
     "invalid_state"),
    ('{"type": "ice"}', "invalid_field"),
    ('{"type": "tip", "text": "hi"}', "forbidden"),
    ('{"type": "tip_ack", "tip_id": "abc"}', "forbidden"),
    ('{"type": "whisper", "on": true}', "forbidden"),
    ('{"type": "whisper", "on": "yes"}', "invalid_field"),
    ('{"type": "ping", "t": "abc"}', "invalid_field"),
    ('{"type": "leave", "now": true}', "invalid_field"),
    ('{"type": "join", "token": "whatever"}', "already_joined"),
]


async def test_malformed_messages_each_get_an_error(base_url: str) -> None:
    assert len(PRE_JOIN) + len(POST_JOIN) >= 20
    async with LivecoachClient(name="bad") as client:
        await client.open(base_url)
        for i, (raw, reason) in enumerate(PRE_JOIN + POST_JOIN):
            if i == len(PRE_JOIN):
                joined = await client.request({"type": "join", "token": token("r-bad", "trainee", "t1")}, "joined")
                assert joined["role"] == "trainee"
            await client.send_raw(raw)
            err = await client.wait_for("error", timeout=5)
            assert err["reason"] == reason, (raw[:80], err)
            assert isinstance(err["message"], str) and err["message"]
        # binary frames are refused too
        assert client._ws is not None
        await client._ws.send_bytes(b"\x00\x01")
        assert (await client.wait_for("error", timeout=5))["reason"] == "bad_json"
        # errors echo the client's id as ref
        await client.send_raw('{"type": "tip", "text": "x", "id": "my-ref"}')
        err = await client.wait_for("error", timeout=5)
        assert (err["reason"], err["ref"]) == ("forbidden", "my-ref")
        # still usable: ping and a real offer work on the same connection
        assert await client.ping() < 1000
        await client.publish(audio=ToneTrack(440), recv_audio=True)
        assert client.pc is not None and client.pc.connectionState == "connected"
        await client.send_raw('{"type": "offer", "sdp": "v=0\\r\\nm=audio 9 x\\r\\n"}')
        assert (await client.wait_for("error", timeout=5))["reason"] == "invalid_state"  # already published
    # and the server keeps serving new connections
    async with LivecoachClient() as other:
        assert (await other.connect(base_url, token("r-other", "qa", "q")))["role"] == "qa"


async def test_oversize_message_gets_too_large_then_close(base_url: str) -> None:
    async with LivecoachClient() as client:
        await client.open(base_url)
        await client.send_raw(json.dumps({"type": "ping", "t": 1, "pad": "x" * 70_000}))
        err = await client.wait_for("error", timeout=5)
        assert err["reason"] == "too_large"
        for _ in range(100):
            if client.closed:
                break
            await asyncio.sleep(0.02)
        assert client.closed and client.close_code == 1009


async def test_join_timeout(aiohttp_server, tmp_path: Path) -> None:
    server = await aiohttp_server(make_app(make_settings(tmp_path, join_timeout_s=0.3)))
    base_url = str(server.make_url("")).rstrip("/")
    async with LivecoachClient() as client:
        await client.open(base_url)
        await client.send_raw('{"type": "ping"}')  # bad messages don't extend the deadline
        assert (await client.wait_for("error", timeout=5))["reason"] == "not_joined"
        err = await client.wait_for("error", timeout=5)
        assert err["reason"] == "join_timeout"


async def test_role_enforcement(base_url: str) -> None:
    async with LivecoachClient(name="qa") as qa, LivecoachClient(name="t") as trainee, \
            LivecoachClient(name="t2") as second, LivecoachClient(name="m") as mentor:
        await qa.connect(base_url, token("r-roles", "qa", "q"))
        with pytest.raises(ClientError) as err:
            await qa.request({"type": "offer", "sdp": "v=0\r\nm=audio 9 x\r\n"}, "answer")
        assert err.value.reason == "forbidden"
        await trainee.connect(base_url, token("r-roles", "trainee", "t"))
        with pytest.raises(ClientError) as err:
            await second.connect(base_url, token("r-roles", "streamer", "s"))
        assert err.value.reason == "room_full"
        # a refused join leaves the socket open for another try
        assert not second.closed
        await mentor.connect(base_url, token("r-roles", "mentor", "m"))
        with pytest.raises(ClientError) as err:
            await mentor.request({"type": "tip_ack", "tip_id": "x"}, "tip_acked")
        assert err.value.reason == "forbidden"
        with pytest.raises(ClientError) as err:
            await mentor.tip("hello")  # the primary is a trainee, not a streamer
        assert err.value.reason == "no_streamer"
        joined = await qa.wait_for("participant_joined", lambda m: m["role"] == "mentor")
        assert joined["user"] == "m"
        # the trainee leaving ends the session for everyone
        session_id = trainee.joined["session_id"]  # type: ignore[index]
        await trainee.close()
        ended = await qa.wait_for("session_ended", timeout=5)
        assert ended["session_id"] == session_id
