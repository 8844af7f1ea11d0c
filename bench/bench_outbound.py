"""CPU per 20 ms frame of the customer's outbound voice: aiortc encoding AudioFrames (the stock
path) vs OpusPacedTrack's inline Opus packets (media/opus_out.py). Prints JSON.

    python bench/bench_outbound.py [--frames 3000] [--peer-s 12]

- per frame, no pacing: the track's recv() plus what RTCRtpSender does with its result: for an
  AudioFrame its pure-Python audio level and OpusEncoder.encode in the default thread pool, for
  a Packet encoder.pack(); process CPU (all threads) over ``--frames`` frames of speech (espeak
  fixture, looped) and of silence;
- real peers on loopback: one sender, the receiver drops packets at RTP (no decode), half speech
  half silence for ``--peer-s`` seconds per path; process CPU per second of session (includes
  SRTP, ICE and the sender's loop, not only the audio path).

Measured on the 2-core dev box (busy; ±15 %), 48 kbps complexity 5: per frame, aiortc path speech
555-730 µs and silence 535-665 µs (its level loop + thread hop + encode of zeros), inline speech
310-350 µs and silence 9-14 µs; real peers 80-88 vs 41-46 ms CPU per second of session.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
from aiortc import rtp
from aiortc.codecs.opus import OpusEncoder
from av import AudioFrame

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media.opus_out import OpusPacedTrack  # noqa: E402
from media.outbound import PacedAudioTrack  # noqa: E402
from media.peer import close_quietly, connect_in_process, create_peer_connection  # noqa: E402
from media.settings import MediaSettings  # noqa: E402
from qa import fixtures  # noqa: E402


def _speech() -> bytes:
    with wave.open(str(fixtures.fixtures_dir() / "en_monologue.wav")) as w:
        assert w.getframerate() == 48_000 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


async def _unpaced() -> None:
    return None


async def per_frame(inline: bool, speech: bytes | None, frames: int) -> dict[str, Any]:
    track = OpusPacedTrack() if inline else PacedAudioTrack()
    track._pace = _unpaced  # type: ignore[method-assign]  # CPU only, not the 20 ms clock
    encoder, loop = OpusEncoder(), asyncio.get_running_loop()
    sizes: list[int] = []  # payload bytes
    n, uid = 0, 0
    cpu0 = time.process_time()
    while n < frames:
        if speech is not None and track.queued_ms() < 100:
            track.push(f"u{uid}", speech, 48_000)
            track.end(f"u{uid}")
            uid += 1
        data = await track.recv()
        if isinstance(data, AudioFrame):  # what RTCRtpSender._next_encoded_frame does
            rtp.compute_audio_level_dbov(data)
            payloads, _ = await loop.run_in_executor(None, encoder.encode, data, False)
        else:
            payloads, _ = encoder.pack(data)
        sizes += [len(p) for p in payloads]
        n += 1
    cpu = time.process_time() - cpu0
    track.stop()
    return {"us_per_frame": round(cpu / frames * 1e6, 1), "mean_bytes": round(float(np.mean(sizes)), 1),
            "speech_frames": track.stats["audio_frames"]}


async def peers(inline: bool, speech: bytes, seconds: float) -> dict[str, Any]:
    settings = MediaSettings(ice_loopback_only=True, output_opus_inline=inline)
    track = OpusPacedTrack.from_settings(settings) if inline else PacedAudioTrack.from_settings(settings)
    a, b = create_peer_connection(settings), create_peer_connection(settings)
    a.addTrack(track)
    received = [0]

    @b.on("track")
    def _on_track(_remote: Any) -> None:
        receiver = next(t.receiver for t in b.getTransceivers() if t.kind == "audio")

        async def drop(_packet: Any, arrival_time_ms: int) -> None:
            received[0] += 1

        setattr(receiver, "_handle_rtp_packet", drop)  # noqa: B010  # count, no decode

    try:
        await connect_in_process(a, b)
        while received[0] < 10:
            await asyncio.sleep(0.02)
        frames0, cpu0, t0 = track.stats["frames"], time.process_time(), time.perf_counter()
        clip = speech[: 3 * 48_000 * 2]  # 3 s of speech, then 3 s of silence
        uid = 0
        while time.perf_counter() - t0 < seconds:
            track.push(f"u{uid}", clip, 48_000)
            track.end(f"u{uid}")
            await track.wait_done(f"u{uid}")
            await asyncio.sleep(3.0)
            uid += 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        frames = track.stats["frames"] - frames0
    finally:
        await close_quietly(a)
        await close_quietly(b)
    return {"cpu_ms_per_s": round(cpu / wall * 1000, 1), "us_per_frame": round(cpu / frames * 1e6, 1),
            "frames": frames, "speech_frames": track.stats["audio_frames"], "received": received[0]}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--peer-s", type=float, default=12.0, help="0 skips the real-peer run")
    args = parser.parse_args()
    speech = _speech()
    result: dict[str, Any] = {}
    for name, inline in (("aiortc_frames", False), ("inline_opus", True)):
        result[name] = {"speech": await per_frame(inline, speech, args.frames),
                        "silence": await per_frame(inline, None, args.frames)}
        if args.peer_s > 0:
            result[name]["peers"] = await peers(inline, speech, args.peer_s)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
