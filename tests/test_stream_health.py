"""Stream health of a shadowed stream: fps, resolution, loss, bitrate, freezes and the alerts."""

from __future__ import annotations

from dataclasses import dataclass

from coach.stream_health import NS, HealthThresholds, StreamHealth, rtp_counters


def feed_frames(h: StreamHealth, start_s: float, end_s: float, fps: float, size=(640, 480)) -> None:
    t = start_s
    while t < end_s:
        h.on_frame(int(t * NS), *size)
        t += 1 / fps


def test_figures_from_frames_and_rtp() -> None:
    h = StreamHealth()
    feed_frames(h, 0.0, 4.0, 30)
    h.on_rtp(int(2 * NS), packets_received=1000, packets_lost=0, bytes_received=500_000, jitter_ticks=900)
    h.on_rtp(int(4 * NS), packets_received=1970, packets_lost=30, bytes_received=1_000_000, jitter_ticks=1800)
    s = h.sample(int(4 * NS))
    assert 28 <= s["fps"] <= 31
    assert (s["width"], s["height"]) == (640, 480)
    assert s["loss_pct"] == 3.0  # 30 lost of 1000 expected in the window
    assert s["bitrate_kbps"] == 2000.0  # 500 kB in 2 s
    assert s["jitter_ms"] == 20.0  # 1800 ticks of the 90 kHz clock
    assert s["freezes"] == 0


def test_low_fps_alerts_once_after_hold_and_rearms() -> None:
    fired: list[dict] = []
    h = StreamHealth(HealthThresholds(fps_min=15, hold_s=5), emit=fired.append)
    feed_frames(h, 0.0, 3.0, 30)
    feed_frames(h, 3.0, 12.0, 4)  # the stream drops to a few fps
    for tenth in range(120):
        h.tick(int(tenth / 10 * NS))
    assert [a["kind"] for a in fired] == ["stream_fps_low"]
    alert = fired[0]
    assert alert["fps"] < 15 and alert["threshold"] == 15 and alert["for_s"] >= 5
    # Low fps begins once the 2 s window holds only slow frames (~t=4..5 s): not before t=9 s.
    assert alert["t_ns"] >= 9 * NS
    assert "message" not in alert  # the page words it
    feed_frames(h, 12.0, 15.0, 30)  # recovers...
    for tenth in range(120, 150):
        h.tick(int(tenth / 10 * NS))
    feed_frames(h, 15.0, 25.0, 3)  # ...and drops again: a new episode
    for tenth in range(150, 250):
        h.tick(int(tenth / 10 * NS))
    assert [a["kind"] for a in fired] == ["stream_fps_low", "stream_fps_low"]


def test_short_dip_does_not_alert() -> None:
    h = StreamHealth()
    feed_frames(h, 0.0, 3.0, 30)
    feed_frames(h, 3.0, 5.0, 5)
    feed_frames(h, 5.0, 12.0, 30)
    assert not any(h.tick(int(tenth / 10 * NS)) for tenth in range(120))


def test_loss_alert() -> None:
    h = StreamHealth()
    feed_frames(h, 0.0, 10.0, 30)
    fired = []
    for sec in range(11):
        h.on_rtp(sec * NS, packets_received=sec * 900, packets_lost=sec * 100)  # 10 % loss
        fired += h.tick(sec * NS)
    assert [a["kind"] for a in fired] == ["stream_loss_high"]
    assert fired[0]["loss_pct"] == 10.0 and fired[0]["threshold"] == 3.0


def test_freeze_counted() -> None:
    h = StreamHealth()
    feed_frames(h, 0.0, 2.0, 30)
    feed_frames(h, 3.0, 4.0, 30)  # 1 s without a frame
    assert len(h.freezes) == 1 and 0.9 < h.freezes[0]["duration_s"] < 1.1
    assert h.sample(4 * NS)["freezes"] == 1


@dataclass
class FakeStat:  # the shape of aiortc's stats dataclasses
    type: str
    kind: str | None = None
    packetsReceived: int = 0
    packetsLost: int = 0
    jitter: float = 0
    bytesReceived: int = 0


def test_rtp_counters_reads_aiortc_report() -> None:
    report = {"a": FakeStat("inbound-rtp", "video", 10, 1, 90.0), "b": FakeStat("transport", bytesReceived=1234),
              "c": {"type": "inbound-rtp", "kind": "audio", "packetsReceived": 99}}
    assert rtp_counters(report) == {"packets_received": 10, "packets_lost": 1, "jitter_ticks": 90.0,
                                    "bytes_received": 1234}
    assert rtp_counters({}) is None
