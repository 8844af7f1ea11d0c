"""What a shadow report adds to a session report: the mentor's whispers and tips on the timeline
and the stream's health over time (pure functions over the session's events)."""

from __future__ import annotations

from statistics import mean
from typing import Any

from coach.analytics_spans import Timeline

HEALTH_POINTS_MAX = 120  # the chart needs no more; an hour of 1 s samples is thinned to this
HEALTH_FIELDS = ("fps", "width", "height", "bitrate_kbps", "loss_pct", "jitter_ms", "freezes")


def whisper_items(events: list[dict[str, Any]], tl: Timeline) -> list[dict[str, Any]]:
    """Push-to-talk spans of the mentor (on → off; one still on runs to the session end)."""
    items, open_at, who = [], None, None
    for ev in events:
        if ev.get("type") != "whisper":
            continue
        if ev.get("on") and open_at is None:
            open_at, who = int(ev["t_ns"]), ev.get("from")
        elif not ev.get("on") and open_at is not None:
            duration_s = round((int(ev["t_ns"]) - open_at) / 1e9, 2)
            items.append({"kind": "whisper", "t_s": tl.s(open_at), "duration_s": duration_s, "from": who})
            open_at = None
    if open_at is not None:
        items.append({"kind": "whisper", "t_s": tl.s(open_at), "duration_s": round((tl.t_end - open_at) / 1e9, 2),
                      "from": who})
    return items


def tip_acks(events: list[dict[str, Any]]) -> dict[Any, float]:
    """tip_id → round trip (ms) of the streamer's acknowledgement."""
    acks = (ev for ev in events if ev.get("type") in ("tip_ack", "tip_acked"))
    return {ev.get("tip_id"): float(ev.get("rtt_ms") or 0) for ev in acks}


def stream_health(events: list[dict[str, Any]], tl: Timeline) -> dict[str, Any] | None:
    """The stream-health samples (thinned) and a summary; None when the stream had no video."""
    samples = [ev for ev in events if ev.get("type") == "stream_health" and ev.get("fps") is not None]
    if not samples:
        return None
    step = max(1, -(-len(samples) // HEALTH_POINTS_MAX))
    points = [{"t_s": tl.s(int(ev["t_ns"])), **{k: ev.get(k) for k in HEALTH_FIELDS}} for ev in samples[::step]]
    fps = [float(ev["fps"]) for ev in samples]
    losses = [float(ev["loss_pct"]) for ev in samples if ev.get("loss_pct") is not None]
    last = samples[-1]
    return {
        "points": points,
        "fps_mean": round(mean(fps), 1),
        "fps_min": round(min(fps), 1),
        "loss_max_pct": round(max(losses), 2) if losses else None,
        "freezes": int(last.get("freezes") or 0),
        "resolution": f"{last['width']}×{last['height']}" if last.get("width") else None,
        "fps_threshold": last.get("fps_min"),
    }


def health_chart(health: dict[str, Any] | None, width: int = 640, height: int = 120) -> dict[str, Any] | None:
    """Polyline of fps over time for the inline SVG (geometry here, so the template stays dumb)."""
    if not health or not health["points"]:
        return None
    pad_l, pad_b, pad_t = 44, 18, 8
    pts = health["points"]
    t_max = max(p["t_s"] for p in pts) or 1.0
    fps_top = max([30.0] + [float(p["fps"]) for p in pts])
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t

    def y(v: float) -> float:
        return round(pad_t + plot_h - plot_h * min(v, fps_top) / fps_top, 1)

    line = " ".join(f"{round(pad_l + plot_w * p['t_s'] / t_max, 1)},{y(float(p['fps']))}" for p in pts)
    threshold = health.get("fps_threshold")
    return {"width": width, "height": height, "line": line, "x0": pad_l, "x1": width - 8,
            "base_y": pad_t + plot_h, "top": round(fps_top), "top_y": pad_t,
            "threshold_y": y(float(threshold)) if threshold else None, "threshold": threshold, "t_max": round(t_max)}
