"""Mentor shadowing that coaches: live speech rate + alerts in the mentor's language, stream
health, the shadow report; and the mentor page's empty-room and wrong-link states."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import ServerThread, browser_settings, coach_hooks, poll

from coach.settings import AlertSettings

SEEN_WITHIN_S = 3.0


@pytest.fixture
def coaching_server(tmp_path: Path) -> Iterator[ServerThread]:
    """Real stream analysis; dead air after 3 s so the silent part of the test stays short."""
    settings = browser_settings(tmp_path / "data", alerts=AlertSettings(dead_air_s=3.0))
    srv = ServerThread(settings, hooks=coach_hooks()).start()
    srv.warm_up_stt()
    yield srv
    srv.stop()


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback test server
        return json.loads(resp.read())


def wait_alert_seen(mentor: Any, kind: str, timeout_s: float) -> tuple[dict[str, Any], float]:
    """Wait until the mentor page shows an alert of ``kind``; returns it and how long after the
    server emitted it it was rendered. The server runs in this process (its t_ns is this
    perf_counter) and the browser on this machine (Date.now() is this wall clock)."""
    wall_minus_perf_ns = time.time_ns() - time.perf_counter_ns()
    deadline = time.monotonic() + timeout_s
    js = f"document.querySelector('#alerts li[data-kind=\"{kind}\"]') && LC.alerts.find(a => a.kind === '{kind}')"
    while time.monotonic() < deadline:
        alert = mentor.evaluate(js)
        if alert:
            return alert, (alert["shown_ms"] * 1e6 - (alert["t_ns"] + wall_minus_perf_ns)) / 1e9
        mentor.wait_for_timeout(100)
    raise AssertionError(f"no {kind} alert on the mentor page: alerts {mentor.evaluate('LC.alerts')}, "
                         f"metrics {mentor.evaluate('LC.metrics')}, errors {mentor.evaluate('LC.errors')}, "
                         f"console {getattr(mentor, 'console_log', [])[-20:]}")


def test_fast_then_silent_streamer_is_coached_live_and_reported(
        new_page: Callable[..., Any], coaching_server: ServerThread, fixtures_dir: Path,
        shot: Callable[..., Path]) -> None:
    srv = coaching_server
    fast = fixtures_dir / "en_fast_monologue.wav"  # ~23 s at 260 words/min, then silence
    mentor = new_page(fast, loop=False, lang="zh")
    mentor.goto(srv.url + "/static/mentor.html?room=coach-fast")
    mentor.fill("#name", "coach-li")
    mentor.click("#start")
    mentor.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)
    # Nobody is live yet: the page says so (in Chinese), and a tip has nowhere to go.
    empty = mentor.locator('.banner[data-reason="empty_room"]')
    empty.wait_for()
    assert "还没有主播" in empty.inner_text() and "coach-fast" in empty.inner_text()

    streamer = new_page(fast, loop=False, lang="en")
    streamer.goto(srv.url + "/static/stream.html?room=coach-fast")
    streamer.fill("#name", "anna")
    streamer.check("#autoack")
    streamer.click("#start")
    streamer.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)
    mentor.locator('.banner[data-reason="streamer_live"]').wait_for()
    assert "anna" in mentor.locator('.banner[data-reason="streamer_live"]').inner_text()

    # Talking too fast: the live rate (words/min, in Chinese units) and the alert, within 3 s.
    rate_alert, rate_delay = wait_alert_seen(mentor, "speech_rate_high", timeout_s=75)
    assert rate_delay < SEEN_WITHIN_S, rate_delay
    assert rate_alert["rate"] > rate_alert["threshold"] == 190.0, rate_alert
    text = mentor.locator('#alerts li[data-kind="speech_rate_high"]').inner_text()
    assert "语速过快" in text and "词/分钟" in text and "190" in text, text
    metrics = poll(mentor, "LC.metrics && LC.metrics.speech_rate ? LC.metrics : null", timeout_s=5)
    assert metrics and metrics["speech_rate"] > 190, metrics
    panel = mentor.locator("#metrics").inner_text()
    assert "语速" in panel and "词/分钟" in panel and "目标 110–190" in panel, panel

    # The tip and the whisper, while the streamer talks.
    mentor.click('#quick button[data-key="quick.slow"]')
    mentor.wait_for_function("window.LC && LC.acks.length === 1", timeout=10_000)
    box = mentor.locator("#ptt").bounding_box()
    mentor.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    mentor.mouse.down()
    streamer.wait_for_function("window.LC && LC.whisperOn === true")
    mentor.wait_for_timeout(800)
    mentor.mouse.up()
    streamer.wait_for_function("window.LC && LC.whisperOn === false")

    # Then silence: dead air (3 s here), worded in Chinese with its threshold, within 3 s.
    dead_alert, dead_delay = wait_alert_seen(mentor, "dead_air", timeout_s=60)
    assert dead_delay < SEEN_WITHIN_S, dead_delay
    assert dead_alert["threshold_s"] == 3.0
    print(f"mentor alerts shown after emission: speech_rate_high {rate_delay * 1000:.0f} ms, "
          f"dead_air {dead_delay * 1000:.0f} ms")
    text = mentor.locator('#alerts li[data-kind="dead_air"]').inner_text()
    assert "冷场" in text and "阈值 3 秒" in text, text
    health = mentor.locator("#health").inner_text()
    assert "帧率" in health and "分辨率" in health, health
    shot(mentor, "mentor-live-zh")

    session_id = streamer.evaluate("LC.session_id")
    streamer.click("#stop")
    mentor.locator('.banner[data-reason="empty_room"]').wait_for()  # "the stream has ended"

    # The shadow report: the streamer is the subject; the tip and the whisper are on the timeline.
    deadline = time.monotonic() + 60
    record: dict[str, Any] = {}
    while time.monotonic() < deadline and "report" not in record:
        record = get_json(f"{srv.url}/api/sessions/{session_id}")
        time.sleep(0.5)
    report = record["report"]
    assert report["user"] == "anna" and report["subject_role"] == "streamer" and report["kind"] == "shadow"
    kinds = {it["kind"] for it in report["timeline"]}
    assert {"tip", "whisper", "alert", "line"} <= kinds, kinds
    tip = next(it for it in report["timeline"] if it["kind"] == "tip")
    assert tip["from"] == "coach-li" and tip["ack_ms"] is not None
    assert report["metrics"]["speech_rate"] > 190
    assert {a["kind"] for a in report["alerts"]} >= {"speech_rate_high", "dead_air"}
    mentor.goto(f"{srv.url}/api/sessions/{session_id}/report.html?lang=zh")
    html = mentor.content()
    assert "主播: <b>anna</b>" in html and "导师提示" in html and "导师耳语" in html and "学员" not in html
    shot(mentor, "report-shadow-zh")


def test_stream_at_a_few_fps_raises_a_health_alert(new_page: Callable[..., Any], server: ServerThread,
                                                   question_wav: Path, shot: Callable[..., Path]) -> None:
    streamer = new_page(question_wav, loop=True)
    streamer.goto(server.url + "/static/stream.html?room=stutter")
    streamer.fill("#name", "sam")
    streamer.click("#start")
    streamer.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)
    mentor = new_page(question_wav, loop=True)
    mentor.goto(server.url + "/static/mentor.html?room=stutter")
    mentor.click("#start")
    mentor.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)
    healthy = poll(mentor, "LC.health && LC.health.fps >= 15 ? LC.health : null", timeout_s=20)
    assert healthy and healthy["width"] >= 320, mentor.evaluate("LC.health")
    # The camera drops to ~3 fps (the browser's frame-rate limit on the sent track).
    streamer.evaluate("""LC.session.localMedia.stream.getVideoTracks()[0]
        .applyConstraints({ frameRate: { max: 3 } })""")
    alert, _ = wait_alert_seen(mentor, "stream_fps_low", timeout_s=30)
    assert alert["fps"] < 15 and alert["threshold"] == 15 and alert["for_s"] >= 5, alert
    assert "stutters" in mentor.locator('#alerts li[data-kind="stream_fps_low"]').inner_text()
    shot(mentor, "mentor-stream-health-en")
    mentor.click("#stop")
    streamer.click("#stop")


def test_mentor_page_refuses_a_streamer_link(new_page: Callable[..., Any], server: ServerThread,
                                             question_wav: Path, shot: Callable[..., Path]) -> None:
    from server.auth import issue_token

    token = issue_token(server.settings.server.secret, "wrong-link", "streamer", "sam", 600)
    for lang, words in (("en", ("streamer", "mentor")), ("zh", ("主播", "导师"))):
        page = new_page(question_wav, lang=lang)
        page.goto(server.url + f"/static/mentor.html?token={token}")
        page.click("#start")
        banner = page.locator('.banner[data-reason="wrong_role"]')
        banner.wait_for()
        assert all(w in banner.inner_text() for w in words), banner.inner_text()
        page.wait_for_function("window.LC && LC.phase === 'error'")
        assert page.evaluate("LC.pc") is None and page.evaluate("LC.joined") is None  # never joined
        shot(page, f"mentor-wrong-link-{lang}")
    # Nobody took the streamer's place: the room has no session.
    assert not [s for s in get_json(server.url + "/api/sessions") if s.get("room") == "wrong-link"]
    # And the stream page refuses a mentor link the same way.
    mentor_token = issue_token(server.settings.server.secret, "wrong-link", "mentor", "mia", 600)
    page = new_page(question_wav)
    page.goto(server.url + f"/static/stream.html?token={mentor_token}")
    page.click("#start")
    assert "mentor" in page.locator('.banner[data-reason="wrong_role"]').inner_text()


def test_mentor_on_an_empty_room(new_page: Callable[..., Any], server: ServerThread, question_wav: Path,
                                 shot: Callable[..., Path]) -> None:
    page = new_page(question_wav)
    page.goto(server.url + "/static/mentor.html?room=nobody-here")
    page.click('#quick button[data-key="quick.price"]')  # before Watch: says what to do
    assert "Watch first" in page.locator('.banner[data-reason="watch_first"]').inner_text()
    page.click("#start")
    page.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)
    banner = page.locator('.banner[data-reason="empty_room"]')
    banner.wait_for()
    assert "No streamer is live" in banner.inner_text() and "nobody-here" in banner.inner_text()
    page.fill("#tip-text", "hello?")
    page.press("#tip-text", "Enter")
    assert "No streamer is live in this room" in page.locator('.banner[data-reason="watch_first"]').inner_text()
    assert page.evaluate("LC.tipsSent.length") == 0
    shot(page, "mentor-empty-room-en")
    page.click("#stop")
    assert page.locator("#rtt").inner_text() == ""
