"""Shadowing across two processes: connect time, tip round trip, mentor audio delay vs jitter prefetch.

    python bench/bench_signalling.py [--runs 20] [--bursts 15] [--prefetch 4,2]

Two `livecoach serve` processes share Redis (REDIS_URL, default db 15). Per run, a streamer joins
process A (440 Hz tone + synthetic video) and a mentor joins the same room through process B
(the room's media stays on A; B relays WebSocket messages over the Redis bus). Measured at the
clients (one bench process, one perf_counter clock):

- join_to_media_ms: mentor opens its socket → first frame carrying the streamer's tone arrives
  (WS connect + join via B + offer/answer + ICE/DTLS + relay + jitter buffers).
- tip_rtt_ms: mentor sends a tip → streamer (on A) gets it and acks → mentor gets tip_acked.
- mentor_audio_delay_ms: streamer tone onset (frame leaves the source track) → onset detected in
  the mentor's received audio, with media.jitter_prefetch N on the server AND the mentor client
  (two jitter buffers on the path: server receiver and mentor receiver).
Prints one JSON document on stdout; progress on stderr. The machine's 2 cores are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from media.peer import set_jitter_prefetch  # noqa: E402
from media.settings import MediaSettings  # noqa: E402
from qa.audio import SyntheticVideoTrack, ToneTrack  # noqa: E402
from qa.client import LivecoachClient  # noqa: E402
from qa.detect import ReceivedAudioMonitor, tone_power  # noqa: E402
from server.auth import issue_token  # noqa: E402
from tests.test_multiprocess import SECRET, ServerProcess, wipe_keys  # noqa: E402


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"n": len(values), "median": round(statistics.median(values), 2), "p95": round(p95, 2),
            "min": round(ordered[0], 2), "max": round(ordered[-1], 2)}


class Cluster:
    """Processes A and B on one Redis, started with the given env; cleaned up on exit."""

    def __init__(self, redis_url: str, prefetch: int) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-signalling-")
        env = {"LIVECOACH_MEDIA__JITTER_PREFETCH": str(prefetch)}
        dirs = [Path(self.tmp.name) / n for n in ("a", "b")]
        for d in dirs:
            d.mkdir()
        self.a = ServerProcess("A", dirs[0], redis_url, **env)
        self.b = ServerProcess("B", dirs[1], redis_url, **env)
        self.redis_url = redis_url
        self.rooms: list[str] = []
        self.sessions: list[str] = []
        self.users: list[str] = []

    async def __aenter__(self) -> "Cluster":
        await asyncio.gather(self.a.start(), self.b.start())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(self.a.stop(), self.b.stop())
        await wipe_keys(self.redis_url, self.rooms, self.sessions, self.users,
                        [self.a.process_id, self.b.process_id])
        self.tmp.cleanup()

    def tokens(self) -> tuple[str, str, str, str]:
        room = f"bench-{uuid.uuid4().hex[:8]}"
        st, mn = f"st-{uuid.uuid4().hex[:6]}", f"mn-{uuid.uuid4().hex[:6]}"
        self.rooms.append(room)
        self.users += [st, mn]
        return (issue_token(SECRET, room, "streamer", st, 600), issue_token(SECRET, room, "mentor", mn, 600),
                st, mn)


async def first_tone(track: Any, freq_hz: float, timeout: float) -> int:
    """perf_counter_ns when the first frame carrying ``freq_hz`` arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = await asyncio.wait_for(track.recv(), timeout)
        pcm = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1)
        if tone_power(pcm, frame.sample_rate, freq_hz) > 0.005:
            return time.perf_counter_ns()
    raise TimeoutError(f"no {freq_hz} Hz tone within {timeout} s")


async def drain(track: Any) -> None:
    """Keep reading so aiortc's receiver queue does not grow while we do other things."""
    try:
        while True:
            await track.recv()
    except Exception:  # noqa: BLE001 - track ended
        return


async def one_run(cluster: Cluster, media: MediaSettings) -> dict[str, float]:
    st_token, mn_token, _, _ = cluster.tokens()
    streamer = LivecoachClient(media, name="streamer")
    mentor = LivecoachClient(media, name="mentor")
    tone, video = ToneTrack(440.0), SyntheticVideoTrack()
    tasks: list[asyncio.Task[None]] = []
    try:
        t0 = time.perf_counter_ns()
        joined = await streamer.connect(cluster.a.url, st_token)
        cluster.sessions.append(joined["session_id"])
        await streamer.publish(audio=tone, video=video, recv_audio=True)
        streamer_ms = (time.perf_counter_ns() - t0) / 1e6
        tasks.append(asyncio.create_task(drain(streamer.received_audio)))
        tone.sounding = True

        t0 = time.perf_counter_ns()
        await mentor.connect(cluster.b.url, mn_token)
        t_joined = time.perf_counter_ns()
        await mentor.publish(audio=ToneTrack(880.0), recv_audio=True, recv_video=True)
        t_media = await first_tone(mentor.received_audio, 440.0, timeout=10)
        tasks.append(asyncio.create_task(drain(mentor.received_audio)))
        tasks.append(asyncio.create_task(drain(mentor.received_video)))

        t_tip = time.perf_counter_ns()
        tip_id = await mentor.tip("price tag, please")
        await streamer.wait_for("tip", lambda m: m.get("tip_id") == tip_id, timeout=5)
        await streamer.ack(tip_id)
        acked = await mentor.wait_for("tip_acked", lambda m: m.get("tip_id") == tip_id, timeout=5)
        tip_ms = (acked["_recv_ns"] - t_tip) / 1e6
        return {
            "streamer_join_to_connected_ms": streamer_ms,
            "mentor_join_ms": (t_joined - t0) / 1e6,
            "mentor_offer_to_connected_ms": float(mentor.connect_ms or 0.0),
            "join_to_media_ms": (t_media - t0) / 1e6,
            "tip_rtt_ms": tip_ms,
            "tip_rtt_server_ms": float(acked["rtt_ms"]),
        }
    finally:
        await teardown([tone, video], [mentor, streamer], tasks)


async def teardown(tracks: list[Any], clients: list[LivecoachClient], tasks: list[asyncio.Task[None]]) -> None:
    for track in tracks:
        track.stop()
    for client in clients:
        await client.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def audio_delay(cluster: Cluster, media: MediaSettings, bursts: int) -> list[float]:
    """Tone bursts (200 ms on / 400 ms off) from the streamer; onset delays seen by the mentor."""
    st_token, mn_token, _, _ = cluster.tokens()
    streamer = LivecoachClient(media, name="streamer")
    mentor = LivecoachClient(media, name="mentor")
    tone, video = ToneTrack(440.0), SyntheticVideoTrack()
    detector = ReceivedAudioMonitor(on_dbfs=-30.0, hold_ms=60.0)

    async def listen(track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.perf_counter_ns()
                # t_ns = time of the frame's first sample: it arrived complete, 20 ms long.
                detector.feed_audio(frame, t_ns=now - frame.samples * 1_000_000_000 // frame.sample_rate)
        except Exception:  # noqa: BLE001 - track ended
            return

    tasks: list[asyncio.Task[None]] = []
    try:
        joined = await streamer.connect(cluster.a.url, st_token)
        cluster.sessions.append(joined["session_id"])
        await streamer.publish(audio=tone, video=video, recv_audio=True)
        tasks.append(asyncio.create_task(drain(streamer.received_audio)))
        await mentor.connect(cluster.b.url, mn_token)
        await mentor.publish(audio=ToneTrack(880.0), recv_audio=True, recv_video=True)
        tasks.append(asyncio.create_task(listen(mentor.received_audio)))
        tasks.append(asyncio.create_task(drain(mentor.received_video)))
        await asyncio.sleep(1.0)  # let both jitter buffers settle
        await tone.play_bursts(bursts, on_s=0.2, off_s=0.4)
        await asyncio.sleep(0.5)
        # Match each sent onset to the first heard onset after it, within 500 ms (bursts are
        # 600 ms apart, so a miss is never paired with the next burst).
        delays: list[float] = []
        for sent in tone.onsets_ns:
            heard = next((t for t in detector.onsets if t >= sent), None)
            if heard is not None and heard - sent < 500_000_000:
                delays.append((heard - sent) / 1e6)
        return delays
    finally:
        await teardown([tone, video], [mentor, streamer], tasks)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    redis_url = args.redis_url
    prefetches = [int(x) for x in args.prefetch.split(",") if x]
    result: dict[str, Any] = {"runs": args.runs, "redis_url": redis_url, "loadavg_start": os.getloadavg()[0]}

    say(f"connect + tip: {args.runs} runs (prefetch {prefetches[0]})")
    set_jitter_prefetch(prefetches[0])
    media = MediaSettings(ice_loopback_only=True, jitter_prefetch=prefetches[0])
    rows: list[dict[str, float]] = []
    failures: list[str] = []
    async with Cluster(redis_url, prefetches[0]) as cluster:
        for i in range(args.runs):
            try:
                rows.append(await one_run(cluster, media))
            except (Exception, asyncio.TimeoutError) as exc:  # noqa: BLE001 - count and go on
                failures.append(f"{type(exc).__name__}: {exc}")
            if (i + 1) % 5 == 0:
                say(f"  {i + 1} runs")
    result["failures"] = failures
    for key in rows[0] if rows else []:
        result[key] = summary([r[key] for r in rows])

    result["mentor_audio_delay_ms"] = {}
    for n in prefetches:
        say(f"audio delay, jitter_prefetch={n}: {args.bursts} bursts")
        set_jitter_prefetch(n)  # the mentor client's receiver; the servers get it by env
        media = MediaSettings(ice_loopback_only=True, jitter_prefetch=n)
        async with Cluster(redis_url, n) as cluster:
            delays = await audio_delay(cluster, media, args.bursts)
        result["mentor_audio_delay_ms"][f"prefetch_{n}"] = {**summary(delays), "bursts_sent": args.bursts,
                                                             "missed": args.bursts - len(delays)}
    result["loadavg_end"] = os.getloadavg()[0]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--bursts", type=int, default=15)
    parser.add_argument("--prefetch", default="4,2", help="comma-separated jitter prefetch values")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
