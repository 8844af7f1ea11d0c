"""Media-layer figures, printed as JSON (runs in ~30 s; loopback only).

    python bench/bench_media.py [--bursts 12]

- one-way audio delay per jitter prefetch (1, 2, 4): tone bursts A→B, from the sender track's
  recv() emitting the first tone frame to InboundAudio receiving the first loud 16 kHz chunk;
- PacedAudioTrack pacing: frame interval and lateness against its schedule;
- flush() and push() cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media.inbound import InboundAudio  # noqa: E402
from media.outbound import PacedAudioTrack  # noqa: E402
from media.peer import close_quietly, connect_in_process, create_peer_connection  # noqa: E402
from media.settings import MediaSettings  # noqa: E402
from qa.audio import ToneTrack  # noqa: E402
from qa.detect import ReceivedAudioMonitor  # noqa: E402


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "p95": round(_pct(values, 0.95), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


async def one_way_delay(prefetch: int, bursts: int) -> dict:
    settings = MediaSettings(jitter_prefetch=prefetch, ice_loopback_only=True)
    a, b = create_peer_connection(settings), create_peer_connection(settings)
    tone = ToneTrack(freq_hz=1000, amplitude=0.5)
    a.addTrack(tone)
    detector = ReceivedAudioMonitor(on_dbfs=-30, hold_ms=60)
    inbound: list[InboundAudio] = []

    @b.on("track")
    def _on_track(track) -> None:
        ib = InboundAudio(track, lambda pcm, t: detector.feed_audio(pcm, t, sample_rate=16_000))
        ib.start()
        inbound.append(ib)

    t_connect = time.perf_counter_ns()
    try:
        await connect_in_process(a, b)
        while a.connectionState != "connected" or not inbound or inbound[0].stats["frames"] < 5:
            await asyncio.sleep(0.01)
        connect_ms = (time.perf_counter_ns() - t_connect) / 1e6
        await asyncio.sleep(0.3)
        await tone.play_bursts(bursts, on_s=0.15, off_s=0.25)
        await asyncio.sleep(0.3)
    finally:
        for ib in inbound:
            await ib.stop()
        await close_quietly(a)
        await close_quietly(b)
    delays = []
    for tx in tone.onsets_ns[1:]:  # first burst is warm-up
        rx = [r for r in detector.onsets if r >= tx]
        if rx and rx[0] - tx < 400e6:
            delays.append((rx[0] - tx) / 1e6)
    return {"prefetch": prefetch, "connect_ms": round(connect_ms, 1), "delay_ms": _summary(delays),
            "unmatched": len(tone.onsets_ns) - 1 - len(delays)}


async def pacing(seconds: float = 3.0) -> dict:
    track = PacedAudioTrack()
    pcm = (np.ones(48_000 * 2) * 1000).astype(np.int16).tobytes()
    track.push("u", pcm, 48_000)
    times = []
    t0 = time.perf_counter_ns()
    while time.perf_counter_ns() - t0 < seconds * 1e9:
        await track.recv()
        times.append(time.perf_counter_ns())
    track.stop()
    intervals = [(b - a) / 1e6 for a, b in zip(times, times[1:])]
    start = times[0]
    late = [max(0.0, (t - (start + i * 20_000_000)) / 1e6) for i, t in enumerate(times)]
    return {
        "frames": len(times),
        "frames_per_s": round((len(times) - 1) / ((times[-1] - times[0]) / 1e9), 2),
        "interval_ms": _summary(intervals),
        "interval_jitter_ms_stdev": round(statistics.pstdev(intervals), 3),
        "late_vs_schedule_ms": _summary(late),
        "stats": track.stats,
    }


def flush_and_push_cost(reps: int = 200) -> dict:
    track = PacedAudioTrack()
    five_s_24k = (np.sin(np.arange(24_000 * 5) / 7) * 8000).astype(np.int16).tobytes()
    chunk_100ms_24k = five_s_24k[: 2400 * 2]
    flush_us, push_us, push48_us = [], [], []
    for i in range(reps):
        for j in range(10):
            t = time.perf_counter_ns()
            track.push(f"u{i}", chunk_100ms_24k, 24_000)
            push_us.append((time.perf_counter_ns() - t) / 1e3)
        t = time.perf_counter_ns()
        track.push(f"v{i}", five_s_24k[: 4800 * 2], 48_000)
        push48_us.append((time.perf_counter_ns() - t) / 1e3)
        t = time.perf_counter_ns()
        dropped = track.flush()
        flush_us.append((time.perf_counter_ns() - t) / 1e3)
    track.stop()
    return {"flush_us": _summary(flush_us), "flushed_ms_each": round(dropped, 1),
            "push_100ms_at_24k_resampled_us": _summary(push_us), "push_100ms_at_48k_us": _summary(push48_us)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bursts", type=int, default=12)
    args = parser.parse_args()
    t0 = time.perf_counter()
    delays = [await one_way_delay(p, args.bursts) for p in (1, 2, 4)]
    result = {
        "one_way_audio_delay": delays,
        "paced_track": await pacing(),
        "flush_push": flush_and_push_cost(),
        "bench_s": 0.0,
    }
    result["bench_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
