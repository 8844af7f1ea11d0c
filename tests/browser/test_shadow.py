"""Streamer page + mentor page in two browser contexts: media, tips with ack, whisper."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from conftest import poll

# Same fake mic on both pages (one Chromium), looping so there is speech every ~5.6 s.


def test_mentor_watches_streamer_tips_and_whispers(new_page: Callable[..., Any], server: Any,
                                                   question_wav: Path, shot: Callable[..., Path]) -> None:
    streamer = new_page(question_wav, loop=True)
    streamer.goto(server.url + "/static/stream.html?room=shadow-1")
    streamer.fill("#name", "anna")
    streamer.click("#start")
    streamer.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)

    mentor = new_page(question_wav, loop=True)
    mentor.goto(server.url + "/static/mentor.html?room=shadow-1")
    mentor.fill("#name", "coach-li")
    mentor.click("#start")
    mentor.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)
    streamer.wait_for_function("window.LC && LC.participants.some(p => p.role === 'mentor' && p.user === 'coach-li')")

    # The mentor sees decoded video and hears the streamer's speech (the fake mic file).
    stats = poll(mentor, """async () => { const s = await LC.mediaStats();
        return s.framesDecoded > 20 && s.videoWidth > 0 && s.audioMaxLevel > 0.02 ? s : null; }""")
    assert stats, mentor.evaluate("LC.mediaStats()")
    assert stats["videoWidth"] >= 320, stats
    assert stats["audioEnergy"] > 0, stats

    # Quick tip → toast on the streamer → Ack click → RTT on the mentor.
    mentor.click('#quick button[data-key="quick.price"]')
    toast = streamer.locator("#toasts .toast")
    toast.wait_for(state="visible")
    assert "price" in toast.inner_text().lower()
    shot(streamer, "stream-tip-toast")
    streamer.click("#toasts .toast button.ack")
    mentor.wait_for_function("window.LC && LC.acks.length === 1")
    ack = mentor.evaluate("LC.acks[0]")
    assert 0 < ack["rtt_ms"] < 10_000, ack
    assert mentor.locator("#sent li.acked").count() == 1
    assert "acked in" in mentor.locator("#sent li.acked .status").inner_text()
    assert streamer.locator("#toasts .toast").count() == 0  # acked toasts go away

    # Free-text tip with auto-ack on.
    streamer.check("#autoack")
    mentor.fill("#tip-text", "Smile and show the texture")
    mentor.press("#tip-text", "Enter")
    mentor.wait_for_function("window.LC && LC.acks.length === 2", timeout=10_000)
    tips = streamer.evaluate("LC.tips.map(t => ({text: t.text, from: t.from, acked: t.acked_at !== null}))")
    assert tips[-1] == {"text": "Smile and show the texture", "from": "coach-li", "acked": True}

    # Whisper: silent until push-to-talk, then the streamer hears the mentor's mic.
    streamer.wait_for_timeout(1500)
    assert streamer.evaluate("LC.whisper ? LC.whisper.maxLevel : 0") < 0.005
    streamer.evaluate("LC.whisper && (LC.whisper.maxLevel = 0)")
    box = mentor.locator("#ptt").bounding_box()
    mentor.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    mentor.mouse.down()  # hold the push-to-talk button
    streamer.wait_for_function("window.LC && LC.whisperOn === true")
    streamer.wait_for_function("window.LC && LC.whisper && LC.whisper.maxLevel > 0.02", timeout=12_000)
    shot(mentor, "mentor-whispering")
    mentor.mouse.up()
    streamer.wait_for_function("window.LC && LC.whisperOn === false")
    assert mentor.evaluate("LC.whisper") is False

    mentor.click("#stop")
    streamer.wait_for_function("window.LC && !LC.participants.some(p => p.role === 'mentor')")
    streamer.click("#stop")
    assert streamer.evaluate("LC.phase") == "ended"
