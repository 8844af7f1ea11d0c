"""Lifecycle: many join/leave cycles leave nothing behind; session cap; health, metrics, events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from coach.contracts import TurnRecord
from qa.audio import ToneTrack
from qa.client import ClientError, LivecoachClient
from server.app import STATE, make_app
from server.auth import issue_token
from server.settings import load_settings

SECRET = "lifecycle-test-secret"
OUR_TASK_PREFIXES = ("room-events:", "ws-writer:", "inbox:", "drain:", "grace:")


def token(room: str, role: str, user: str) -> str:
    return issue_token(SECRET, room, role, user, 60)


def settings_for(tmp_path: Path, **server: object):
    return load_settings(
        server={"secret": SECRET, "data_dir": str(tmp_path), **server}, media={"ice_loopback_only": True}
    )


def our_tasks() -> list[str]:
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith(OUR_TASK_PREFIXES)]


async def settle(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("state did not settle")
        await asyncio.sleep(0.02)


async def test_200_join_leave_cycles_leave_nothing_behind(aiohttp_server, tmp_path: Path) -> None:
    app = make_app(settings_for(tmp_path))
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    state = app[STATE]
    baseline_tasks = len(asyncio.all_tasks())
    start = time.perf_counter()
    with_media = 0
    for i in range(200):
        room = f"cycle-{i % 7}"
        if i % 25 == 0:  # every 25th: a trainee with a real peer connection
            async with LivecoachClient(name=f"t{i}") as trainee:
                await trainee.connect(base, token(room, "trainee", f"t{i}"))
                await trainee.publish(audio=ToneTrack(440), recv_audio=True)
                assert state.manager.peer_count == 1
            with_media += 1
        else:
            role = "qa" if i % 2 else "mentor"
            async with LivecoachClient(name=f"c{i}") as client:
                joined = await client.connect(base, token(room, role, f"u{i}"))
                assert joined["role"] == role
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"200 cycles took {elapsed:.1f} s"
    assert with_media == 8
    await settle(lambda: not state.manager.rooms and not state.router.local and not our_tasks())
    assert state.manager.peer_count == 0
    assert not state.manager.by_conn
    assert state.manager.session_count == 0
    assert len(asyncio.all_tasks()) <= baseline_tasks + 2  # aiohttp may keep a keep-alive handler around
    for i in range(7):
        assert await state.store.room_owner(f"cycle-{i}") is None
        assert await state.store.presence(f"cycle-{i}") == []
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as resp:
            health = await resp.json()
    assert health["ok"] is True and health["peers"] == 0 and health["rooms"] == 0 and health["store"] == "memory"
    print(f"200 cycles ({with_media} with media) in {elapsed:.1f} s")


async def test_session_cap_gives_503_with_retry_after(aiohttp_server, tmp_path: Path) -> None:
    app = make_app(settings_for(tmp_path, max_sessions=1))
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    async with LivecoachClient(name="early") as early, LivecoachClient(name="trainee") as trainee:
        await early.connect(base, token("cap-2", "trainee", "e"))  # connected before the cap was reached
        await trainee.connect(base, token("cap", "trainee", "t"))
        await trainee.publish(audio=ToneTrack(440), recv_audio=True)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                       "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                       "Sec-WebSocket-Version": "13"}) as resp:
                assert resp.status == 503
                assert int(resp.headers["Retry-After"]) > 0
                assert (await resp.json())["error"] == "server_busy"
        with pytest.raises(ClientError) as err:
            async with LivecoachClient() as late:
                await late.connect(base, token("cap-3", "qa", "q"))
        assert err.value.reason == "server_busy"
        with pytest.raises(ClientError) as err:
            await early.publish(audio=ToneTrack(440), recv_audio=True)
        assert err.value.reason == "server_busy"
    # capacity comes back when the session ends
    await settle(lambda: app[STATE].manager.peer_count == 0)
    async with LivecoachClient() as again:
        assert (await again.connect(base, token("cap", "qa", "q")))["role"] == "qa"


async def test_events_metrics_and_rest(aiohttp_server, tmp_path: Path) -> None:
    app = make_app(settings_for(tmp_path))
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    async with LivecoachClient(name="trainee") as trainee, LivecoachClient(name="qa") as qa, \
            aiohttp.ClientSession() as http:
        joined = await trainee.connect(base, token("ev", "trainee", "alice"), scenario="price-haggler-en", lang="en")
        await qa.connect(base, token("ev", "qa", "watcher"))
        session_id = joined["session_id"]
        room = app[STATE].manager.rooms["ev"]
        t = 1_000_000_000
        record = TurnRecord(session_id=session_id, turn=1, user_speech_end_ns=t, eot_decision_ns=t + 480_000_000,
                            stt_final_ns=t + 700_000_000, llm_first_token_ns=t + 900_000_000,
                            tts_first_audio_ns=t + 1_000_000_000, first_reply_frame_ns=t + 1_020_000_000,
                            speculative_calls=3, wasted_calls=2)
        room.emit(record.as_dict())
        room.emit({"type": "alert", "kind": "dead_air", "message": "say something", "severity": "warn"})
        room.emit({"type": "interruption", "flushed_ms": 340.0, "turn": 1, "false_interruption": True})
        turn = await trainee.wait_for("turn", timeout=5)
        assert turn["session_id"] == session_id and isinstance(turn["t_ns"], int)
        assert (await qa.wait_for("alert", timeout=5))["kind"] == "dead_air"
        await qa.wait_for("interruption", timeout=5)
        assert trainee.messages("alert") == []  # alerts go to mentor/qa unless alert_trainee

        await trainee.send_raw("nonsense")
        await trainee.wait_for("error", timeout=5)
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert "livecoach_turn_latency_seconds_count 1.0" in text
        assert 'livecoach_turn_stage_seconds_count{stage="endpointing"} 1.0' in text
        assert 'livecoach_turn_stage_seconds_sum{stage="stt"} 0.22' in text
        assert "livecoach_bargein_flushed_ms_sum 340.0" in text
        assert 'livecoach_speculative_stt_calls_total{outcome="wasted"} 2.0' in text
        assert 'livecoach_speculative_stt_calls_total{outcome="used"} 1.0' in text
        assert "livecoach_false_interruptions_total 1.0" in text
        assert 'livecoach_signalling_errors_total{reason="bad_json"} 1.0' in text
        assert "livecoach_sessions 1.0" in text and "livecoach_rooms 1.0" in text

        async with http.get(f"{base}/api/rooms/ev") as resp:
            presence = await resp.json()
        assert sorted(p["user"] for p in presence["participants"]) == ["alice", "watcher"]
        async with http.get(f"{base}/api/clock") as resp:
            clock = await resp.json()
        assert abs(clock["perf_ns"] - time.perf_counter_ns()) < 5e9
        async with http.get(f"{base}/api/rooms/nope") as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "not_found"
        async with http.post(f"{base}/api/dev/token", json={"room": "ev", "role": "root", "user": "x"}) as resp:
            assert resp.status == 400 and (await resp.json())["error"] == "invalid_field"
        async with http.post(f"{base}/api/dev/token", data="{{") as resp:
            assert resp.status == 400
        async with http.post(f"{base}/api/dev/token", json={"room": "ev", "role": "qa", "user": "x"}) as resp:
            assert resp.status == 200 and (await resp.json())["token"]

        await trainee.close()
        await qa.wait_for("session_ended", timeout=5)
        await qa.close()

        async def fetch(path: str):
            async with http.get(base + path) as resp:
                return resp.status, await resp.json()

        await settle(lambda: not app[STATE].manager.rooms)
        status, turns = await fetch(f"/api/sessions/{session_id}/turns")
        assert status == 200 and [e["type"] for e in turns] == ["turn", "interruption"]
        status, events = await fetch(f"/api/sessions/{session_id}/events?type=alert")
        assert [e["kind"] for e in events] == ["dead_air"]
        status, record_out = await fetch(f"/api/sessions/{session_id}")
        assert record_out["status"] == "ended" and record_out["kind"] == "practice" and record_out["user"] == "alice"
        assert record_out["scenario"] == "price-haggler-en" and record_out["duration_s"] >= 0
        status, listed = await fetch("/api/sessions?user=alice")
        assert [r["session_id"] for r in listed] == [session_id]
        assert (await fetch("/api/sessions/does-not-exist"))[0] == 404
        assert (await fetch("/api/sessions/does-not-exist/events"))[0] == 404


async def test_dev_tokens_off_gives_404(aiohttp_server, tmp_path: Path) -> None:
    server = await aiohttp_server(make_app(settings_for(tmp_path, dev_tokens=False)))
    async with aiohttp.ClientSession() as http:
        async with http.post(str(server.make_url("/api/dev/token")), json={"room": "a", "role": "qa", "user": "b"}) as r:
            assert r.status == 404


async def test_shutdown_closes_live_peers_and_sockets(aiohttp_server, tmp_path: Path) -> None:
    app = make_app(settings_for(tmp_path))
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    client = LivecoachClient()
    try:
        await client.connect(base, token("bye", "trainee", "t"))
        await client.publish(audio=ToneTrack(440), recv_audio=True)
        state = app[STATE]
        manager = state.manager
        assert manager.peer_count == 1
        started = time.perf_counter()
        await server.close()
        assert time.perf_counter() - started < state.settings.server.shutdown_timeout_s + 2
        assert manager.peer_count == 0 and not manager.rooms and not our_tasks()
        assert state.services is None  # torn down in reverse of startup
        await settle(lambda: client.closed)
    finally:
        await client.close()


class _SlowClose:
    """A media session whose close (say, a report under heavy load) outlasts shutdown_timeout_s."""

    def __init__(self) -> None:
        self.finished = asyncio.Event()
        self.cancelled = False

    async def close(self) -> None:
        try:
            await asyncio.sleep(0.6)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.finished.set()


class _SlowHooks:
    def __init__(self) -> None:
        self.handles: list[_SlowClose] = []

    def attach(self, ctx) -> _SlowClose:
        self.handles.append(_SlowClose())
        return self.handles[-1]

    @property
    def live_sessions(self) -> int:
        return 0

    async def close(self) -> None:
        return None


async def test_a_media_close_slower_than_the_bound_is_not_cut_off(aiohttp_server, tmp_path: Path) -> None:
    hooks = _SlowHooks()
    app = make_app(settings_for(tmp_path, shutdown_timeout_s=0.1), hooks=hooks)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    async with LivecoachClient(name="slow") as trainee:
        await trainee.connect(base, token("slow-close", "trainee", "t1"))
        await trainee.publish(audio=ToneTrack(440), recv_audio=True)
    handle = hooks.handles[0]
    await asyncio.wait_for(handle.finished.wait(), 10)  # went on past the 0.1 s wait
    assert not handle.cancelled
    await settle(lambda: app[STATE].manager.peer_count == 0)
