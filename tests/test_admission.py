"""Admission by real capacity: the pure policy and load window (no clocks), then a served app that
refuses a new session with 503 + Retry-After while its CPU is over the threshold, live sessions untouched."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from qa.audio import ToneTrack
from qa.client import ClientError, LivecoachClient
from server.admission import Load, LoadWindow, refusal
from server.app import STATE, make_app
from server.auth import issue_token
from server.settings import ServerSettings, load_settings

SECRET = "admission-test-secret"
MS = 1_000_000


def limits(**kw: float) -> ServerSettings:
    return ServerSettings(max_sessions=10, admission_max_loop_lag_ms=100, admission_max_cpu_pct=90, **kw)


def test_policy_admits_under_every_threshold() -> None:
    assert refusal(9, Load(loop_lag_ms=99, cpu_pct=89.9), limits()) is None


def test_policy_refuses_at_each_threshold_and_says_why() -> None:
    assert "live sessions" in (refusal(10, Load(), limits()) or "")
    assert "lagging (100 ms)" in (refusal(0, Load(loop_lag_ms=100), limits()) or "")
    assert "CPU is full (95 %" in (refusal(0, Load(cpu_pct=95), limits()) or "")


def test_policy_threshold_zero_is_off() -> None:
    off = ServerSettings(max_sessions=10, admission_max_loop_lag_ms=0, admission_max_cpu_pct=0)
    assert refusal(0, Load(loop_lag_ms=10_000, cpu_pct=400), off) is None
    assert refusal(10, Load(), off) is not None  # the session cap is never off


def test_window_cpu_is_a_delta_and_lag_a_mean_over_the_window() -> None:
    window = LoadWindow(window_ns=1000 * MS)
    assert window.load() == Load()  # one sample or none: nothing known, nothing refused
    window.add(0, 0, 0)
    window.add(500 * MS, 10 * MS, 250 * MS)   # half a core, 10 ms late
    window.add(1000 * MS, 30 * MS, 500 * MS)
    assert window.load() == Load(loop_lag_ms=20.0, cpu_pct=50.0)
    # 2 s later, only the last second counts: a full core, 100 ms late on average.
    window.add(2000 * MS, 100 * MS, 1500 * MS)
    window.add(2500 * MS, 100 * MS, 2000 * MS)
    load = window.load()
    assert load.cpu_pct == pytest.approx(100.0) and load.loop_lag_ms == pytest.approx(100.0)
    window.add(2600 * MS, -5 * MS, 2000 * MS)  # early wake-ups count as no lag
    assert window.load().loop_lag_ms <= 100.0


async def test_busy_cpu_refuses_new_sessions_and_keeps_live_ones(aiohttp_server, tmp_path: Path) -> None:
    settings = load_settings(server={"secret": SECRET, "data_dir": str(tmp_path), "load_sample_interval_s": 0.05},
                             media={"ice_loopback_only": True})
    app = make_app(settings)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    state = app[STATE]
    async with LivecoachClient(name="live") as live, aiohttp.ClientSession() as http:
        await live.connect(base, issue_token(SECRET, "adm", "trainee", "t", 60))
        await live.publish(audio=ToneTrack(440), recv_audio=True)
        # Any CPU use is "full" now: the next sample makes the process refuse new sessions.
        settings.server.admission_max_cpu_pct = 1e-6
        load = await state.load.next_sample()
        assert load.cpu_pct > 0
        async with http.get(f"{base}/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                   "Sec-WebSocket-Version": "13"}) as resp:
            assert resp.status == 503 and int(resp.headers["Retry-After"]) > 0
            body = await resp.json()
            assert body["error"] == "server_busy" and "CPU" in body["message"]
        with pytest.raises(ClientError) as err:
            async with LivecoachClient() as late:
                await late.connect(base, issue_token(SECRET, "adm-2", "qa", "q", 60))
        assert err.value.reason == "server_busy"
        # The live session is untouched: still joined, its peer still up, its audio still flowing.
        assert state.manager.peer_count == 1
        assert live.received_audio is not None
        await live.received_audio.recv()
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert "livecoach_process_cpu_ratio" in text and "livecoach_loop_lag_seconds" in text
        assert "livecoach_admission_refused_total 2.0" in text
        async with http.get(f"{base}/healthz") as resp:
            health = await resp.json()
        assert health["cpu_pct"] > 0 and health["loop_lag_ms"] >= 0
        # Below the threshold again: admitted.
        settings.server.admission_max_cpu_pct = 0
        async with LivecoachClient() as again:
            assert (await again.connect(base, issue_token(SECRET, "adm-3", "qa", "q", 60)))["role"] == "qa"
