"""Garbage SDP gets ``bad_sdp`` and one log line each: no tracebacks, no orphaned aiortc tasks."""

from __future__ import annotations

import gc
import logging
import random
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection

from qa.client import ClientError, LivecoachClient
from server.app import make_app
from server.auth import issue_token
from server.settings import load_settings

SECRET = "garbage-sdp-secret"


async def valid_offer() -> str:
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="sendrecv")
        pc.addTransceiver("video", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


def mutate(sdp: str, rng: random.Random) -> str:
    lines = sdp.split("\r\n")
    kind = rng.randrange(4)
    i = rng.randrange(2, len(lines))  # keep v=0 so the parser's own check passes
    if kind == 0:
        del lines[i]
    elif kind == 1:
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    elif kind == 2:
        lines.insert(i, rng.choice(["a=rtpmap:x", "m=audio", "c=IN IP4", "a=fingerprint:sha-256 zz",
                                    "a=ice-ufrag:", "a=mid:", "a=group:BUNDLE 9", "a=ssrc:-1"]))
    else:
        lines[i] = "".join(rng.sample(lines[i], len(lines[i])))
    return "\r\n".join(lines)


async def test_garbage_offers_are_refused_quietly(aiohttp_server, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(server={"secret": SECRET, "data_dir": str(tmp_path)}, media={"ice_loopback_only": True})
    server = await aiohttp_server(make_app(settings))
    base = str(server.make_url("")).rstrip("/")
    sdp = await valid_offer()
    rng = random.Random(1234)
    answered = refused = 0
    with caplog.at_level(logging.WARNING):
        for i in range(150):
            tok = issue_token(SECRET, f"g{i}", "streamer", f"s{i}", 60)
            async with LivecoachClient(name=f"s{i}") as client:
                await client.connect(base, tok)
                try:
                    await client.request({"type": "offer", "sdp": mutate(sdp, rng)}, "answer", timeout=20)
                    answered += 1  # some mutations are harmless
                except ClientError as exc:
                    assert exc.reason in ("bad_sdp", "invalid_field"), exc
                    refused += 1
        gc.collect()  # "Task exception was never retrieved" is logged when a failed task is collected
    assert refused > 0 and answered + refused == 150
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert tracebacks == [], [r.getMessage() for r in tracebacks[:3]]
    orphans = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert orphans == [], [r.getMessage() for r in orphans[:3]]
