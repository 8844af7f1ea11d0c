"""The session page of a shadowed stream plays one MP4 with the camera and both voices, labelled
left: streamer, right: mentor (whisper), in each language."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from conftest import ServerThread, poll

TITLES = {"en": "left: streamer, right: mentor (whisper)", "zh": "左声道：主播，右声道：导师（耳语）"}


def status_of(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback test server
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def wait_until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what} not within {timeout_s} s"
        time.sleep(0.25)
    return value


def test_session_page_plays_the_shadow_recording_with_both_voices(
        new_page: Callable[..., Any], server: ServerThread, question_wav: Path, shot: Callable[..., Path]) -> None:
    streamer = new_page(question_wav, loop=True)
    streamer.goto(server.url + "/static/stream.html?room=recording-page")
    streamer.fill("#name", "rec-lin")
    streamer.click("#start")
    streamer.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)
    streamer.wait_for_timeout(3000)
    session_id = streamer.evaluate("LC.session_id")
    streamer.click("#stop")
    base = f"{server.url}/api/sessions/{session_id}"

    def ended() -> dict[str, Any] | None:
        code, body = status_of(base)
        record = json.loads(body) if code == 200 else {}
        return record if record.get("status") == "ended" and "report" in record else None

    record = wait_until(ended, 30, "the session record")
    assert record["recording_channels"] == {"left": "streamer", "right": "mentor"}
    assert record["av_recording"] == f"{session_id}.av.mp4", record
    wait_until(lambda: status_of(base + "/av")[0] == 200, 60, "the muxed recording")

    for lang, title in TITLES.items():
        page = new_page(question_wav, lang=lang)
        page.goto(f"{server.url}/static/session.html?id={session_id}")
        page.wait_for_function("window.LC && LC.phase === 'ready'", timeout=15_000)
        assert page.evaluate("LC.recordingSource") == "av"
        assert title in page.inner_text("#recording-title")
        assert page.evaluate("document.querySelector('#video-recording').src").endswith("/av")
        assert page.evaluate("document.querySelector('#recording').hidden")  # the MP4 carries the voices
        # It plays, with sound: Chromium counts the audio bytes it decoded.
        page.evaluate("(() => { const v = document.querySelector('#video-recording'); v.muted = true; v.play(); })()")
        decoded = poll(page, "(() => { const v = document.querySelector('#video-recording');"
                             " return !v.error && v.currentTime > 0.5 && v.webkitAudioDecodedByteCount; })()",
                       timeout_s=20)
        assert decoded, (page.evaluate("document.querySelector('#video-recording').error?.code"),
                         getattr(page, "console_log", [])[-10:])
        shot(page, f"session-shadow-recording-{lang}")
