"""Media-layer figures, printed as JSON (loopback only; the default run takes ~1.5-2 min).

    python bench/bench_media.py [--bursts 18] [--prefetch 1,2,4] [--jitter-ms 0,5,10,20] [--base-ms 20]

- one-way audio delay and underruns per (jitter prefetch, link jitter): tone bursts A→B, from the
  sender track's recv() emitting a burst's first tone frame to the receiver's track handing out
  that frame (matched by pts, so a late burst is never taken for the next one); frames flow
  every 20 ms throughout (silence between bursts). Jitter 0 is plain loopback; jitter J > 0
  delays each of A's RTP packets by base + |gauss(0, J)| ms, each on its own timer
  (JitteryLink: bench-only fault injection, packets reorder). Per run: underruns = arrival
  gaps > 60 ms between frames the receiver hands out, missing_frames = frames the pts skipped,
  inter-arrival p95/max (qa/detect.py frame_arrival_stats);
- the same links replayed through aiortc's JitterBuffer on a virtual clock (load-independent;
  ``--replay-s`` of audio each, default 120 s: shows the backlog a long session builds up);
- PacedAudioTrack pacing: frame interval and lateness against its schedule;
- flush() and push() cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket, is_rtcp
from av import AudioFrame

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media.jitter import AudioJitterBuffer  # noqa: E402
from media.outbound import PacedAudioTrack  # noqa: E402
from media.peer import close_quietly, connect_in_process, create_peer_connection  # noqa: E402
from media.settings import MediaSettings  # noqa: E402
from qa.audio import ToneTrack  # noqa: E402
from qa.detect import frame_arrival_stats, level_dbfs, onset_delays_by_pts  # noqa: E402

_ONSET_DBFS = -30.0  # the tone is at -9 dBFS; the gaps between bursts are digital silence


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


class JitteryLink:
    """BENCH-ONLY fault injection (kernel netem is not available here): a jittery one-way link.

    Wraps ONE RTCDtlsTransport instance's ``_send_rtp`` (aiortc 1.16 sends every RTP packet of a
    sender through it) so each outgoing RTP packet is delivered ``base_ms + |gauss(0, sd_ms)|``
    later, each on its own timer, so packets reorder as on a real jittery path. RTCP (and DTLS,
    which never passes here) goes out at once. Seeded: every prefetch sees the same delays.
    """

    def __init__(self, base_ms: float, sd_ms: float, seed: int = 14) -> None:
        self.base_ms, self.sd_ms = base_ms, sd_ms
        self._rng = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self.packets = 0

    def install(self, transport: Any) -> None:
        original: Callable[[bytes], Awaitable[None]] = transport._send_rtp

        async def send_rtp(data: bytes) -> None:
            if is_rtcp(data):
                await original(data)
                return
            self.packets += 1
            delay_s = (self.base_ms + abs(self._rng.gauss(0.0, self.sd_ms))) / 1000
            task = asyncio.create_task(self._deliver(original, data, delay_s))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        transport._send_rtp = send_rtp

    @staticmethod
    async def _deliver(send: Callable[[bytes], Awaitable[None]], data: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        try:
            await send(data)
        except ConnectionError:  # the transport closed while the packet was "in flight"
            pass

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class _MarkedTone(ToneTrack):
    """ToneTrack that also notes the pts of each burst's first frame (to match it at the receiver)."""

    def __init__(self) -> None:
        super().__init__(freq_hz=1000, amplitude=0.5)
        self.onset_pts: list[int] = []

    async def recv(self) -> AudioFrame:
        n = len(self.onsets_ns)
        frame = await super().recv()
        if len(self.onsets_ns) > n:
            self.onset_pts.append(frame.pts or 0)
        return frame


async def _read_frames(track: Any, log: dict[str, list[int]], onsets: list[tuple[int, int]],
                       warm: asyncio.Event) -> None:
    """Every frame the receiver's jitter buffer + decoder hand out, timed as it arrives; a loud frame
    after a quiet one is a burst onset (pts, arrival)."""
    was_loud = False
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        t_ns = time.perf_counter_ns()
        pts = frame.pts or 0
        loud = level_dbfs(frame.to_ndarray()) > _ONSET_DBFS
        if loud and not was_loud:
            onsets.append((pts, t_ns))
        was_loud = loud
        log["arrivals"].append(t_ns)
        log["pts"].append(pts)
        log["samples"].append(frame.samples)
        if len(log["arrivals"]) >= 5:
            warm.set()


async def one_way_delay(prefetch: int, bursts: int, jitter_sd_ms: float = 0.0, base_ms: float = 20.0) -> dict:
    """Tone bursts A→B (0.15 s on, 0.25 s off; frames flow continuously, silence between bursts).

    ``jitter_sd_ms`` 0 is plain loopback (no injected delay at all); otherwise A's RTP goes through
    a ``JitteryLink(base_ms, jitter_sd_ms)``.
    """
    settings = MediaSettings(jitter_prefetch=prefetch, ice_loopback_only=True)
    a, b = create_peer_connection(settings), create_peer_connection(settings)
    tone = _MarkedTone()
    a.addTrack(tone)
    rx_onsets: list[tuple[int, int]] = []
    log: dict[str, list[int]] = {"arrivals": [], "pts": [], "samples": []}
    warm = asyncio.Event()
    readers: list[asyncio.Task[None]] = []
    link = JitteryLink(base_ms, jitter_sd_ms) if jitter_sd_ms > 0 else None

    @b.on("track")
    def _on_track(track: Any) -> None:
        readers.append(asyncio.create_task(_read_frames(track, log, rx_onsets, warm)))

    t_connect = time.perf_counter_ns()
    try:
        await connect_in_process(a, b)
        if link is not None:
            link.install(a.getSenders()[0].transport)
        await asyncio.wait_for(warm.wait(), 10)
        connect_ms = (time.perf_counter_ns() - t_connect) / 1e6
        await asyncio.sleep(0.3)
        t0 = time.perf_counter_ns()
        await tone.play_bursts(bursts, on_s=0.15, off_s=0.25)
        await asyncio.sleep(0.3)
        t1 = time.perf_counter_ns()
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        if link is not None:
            await link.close()
        await close_quietly(a)
        await close_quietly(b)
    sent = list(zip(tone.onset_pts, tone.onsets_ns))[1:]  # first burst is warm-up
    delays = [d / 1e6 for d in onset_delays_by_pts(sent, rx_onsets)]
    keep = [i for i, t in enumerate(log["arrivals"]) if t0 <= t <= t1]
    frames = frame_arrival_stats([log["arrivals"][i] for i in keep], [log["pts"][i] for i in keep],
                                 [log["samples"][i] for i in keep])
    frames["sent_frames"] = round((t1 - t0) / 20e6)
    return {"prefetch": prefetch, "jitter_sd_ms": jitter_sd_ms, "base_ms": base_ms if link else 0.0,
            "connect_ms": round(connect_ms, 1), "delay_ms": _summary(delays),
            "delays_ms_in_order": [round(d) for d in delays],  # a rising run = the buffer's backlog grew
            "unmatched": len(sent) - len(delays), **frames}


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


def replay_jitter_buffer(prefetch: int, jitter_sd_ms: float, base_ms: float, seconds: float,
                         seed: int = 14, buffer_kind: str = "livecoach", loss: float = 0.0) -> dict:
    """The same link, replayed through aiortc's own audio JitterBuffer (capacity 16) on a virtual
    clock: no CPU, scheduler or loop in the figures, so they do not move with machine load.

    Packet k is sent at 20k ms and arrives at 20k + base + |gauss(0, sd)| ms (sd 0: no base), or
    never (probability ``loss``); each frame the buffer hands out is timed at the arrival that
    released it. ``buffer_kind``: "aiortc" (stock) or "livecoach" (media/jitter.py).
    """
    rng = random.Random(seed)
    extra = (lambda: base_ms + abs(rng.gauss(0.0, jitter_sd_ms))) if jitter_sd_ms > 0 else (lambda: 0.0)
    sent = [k for k in range(int(seconds * 50)) if not (loss and rng.random() < loss)]
    packets = sorted((k * 20 + extra(), k) for k in sent)
    buffer = (AudioJitterBuffer(capacity=16, prefetch=prefetch) if buffer_kind == "livecoach"
              else JitterBuffer(capacity=16, prefetch=prefetch))
    out_ms: list[float] = []
    out_pts: list[int] = []
    for t_ms, k in packets:
        packet = RtpPacket(payload_type=111, sequence_number=k % 65536, timestamp=k * 960 % (1 << 32))
        packet._data = b"\0"  # type: ignore[attr-defined]  # set by aiortc's depayloader normally
        _, frame = buffer.add(packet)
        if frame is not None:
            out_ms.append(t_ms)
            out_pts.append(frame.timestamp)
    delays = [t - pts / 48 for t, pts in zip(out_ms, out_pts)]
    stats = frame_arrival_stats([int(t * 1e6) for t in out_ms], out_pts, [960] * len(out_pts))
    return {"buffer": buffer_kind, "loss": loss, "prefetch": prefetch, "jitter_sd_ms": jitter_sd_ms,
            "seconds": seconds,
            "delay_ms": _summary(delays), "delay_last_s_median_ms": round(statistics.median(delays[-50:]), 1),
            **stats}


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _table(runs: list[dict]) -> dict[str, dict[str, str]]:
    """'jitter sd' -> 'prefetch' -> 'median delay ms / p95 delay ms / underruns / missing frames'."""
    table: dict[str, dict[str, str]] = {}
    for r in runs:
        d = r["delay_ms"]
        cell = f"{d.get('median', '-')}/{d.get('p95', '-')} ms, {r['underruns']} underruns, {r['missing_frames']} missing"
        row = f"sd={r['jitter_sd_ms']:g}ms" + (f" loss={r['loss']:g}" if r.get("loss") else "")
        table.setdefault(row, {})[f"{r.get('buffer', 'live')} prefetch={r['prefetch']}"] = cell
    return table


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bursts", type=int, default=18, help="0.4 s each, per (prefetch, jitter) run")
    parser.add_argument("--prefetch", default="1,2,4")
    parser.add_argument("--jitter-ms", default="0,5,10,20",
                        help="sd of the extra per-packet delay; 0 = plain loopback")
    parser.add_argument("--base-ms", type=float, default=20.0, help="fixed delay on the jittery link")
    parser.add_argument("--replay-s", type=float, default=120.0, help="virtual-clock replay length")
    parser.add_argument("--loss", default="0,0.01", help="replay: packet loss probabilities")
    parser.add_argument("--only-jitter", action="store_true", help="skip the pacing and push/flush figures")
    args = parser.parse_args()
    t0 = time.perf_counter()
    runs = [await one_way_delay(int(p), args.bursts, sd, args.base_ms)
            for sd in _floats(args.jitter_ms) for p in _floats(args.prefetch)]
    replays = [replay_jitter_buffer(int(p), sd, args.base_ms, args.replay_s, buffer_kind=kind, loss=loss)
               for loss in _floats(args.loss) for sd in _floats(args.jitter_ms)
               for kind in ("aiortc", "livecoach") for p in _floats(args.prefetch)]
    result: dict[str, Any] = {
        "jitter_table": _table(runs),
        "replay_table": _table(replays),
        "one_way_audio_delay": runs,
        "jitter_buffer_replay": replays,
    }
    if not args.only_jitter:
        result["paced_track"] = await pacing()
        result["flush_push"] = flush_and_push_cost()
    result["bench_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
