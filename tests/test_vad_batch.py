"""Batched silero VAD (coach/vad_batch.py): the real model, several streams in one call.

The event loop drives the batcher; no test depends on how fast this machine is: a batch runs
either when every registered stream has a chunk waiting (next loop iteration) or at its timer,
and the tests only wait for those to have happened.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from coach.settings import VadSettings
from coach.vad import CHUNK, SileroVad, SpeechEnd, SpeechStart, VadEvent, VadSegmenter
from coach.vad_batch import VadBatcher
from tests.test_vad import load_16k

STEP = 320  # 20 ms frames, like the inbound pump


def _frames(pcm: np.ndarray, lead_samples: int) -> list[np.ndarray]:
    """``pcm`` after ``lead_samples`` of silence and before 1 s of it, cut in 20 ms frames."""
    x = np.concatenate([np.zeros(lead_samples, np.int16), pcm, np.zeros(16_000, np.int16)])
    return [x[i : i + STEP] for i in range(0, len(x) - STEP + 1, STEP)]


async def _batched_events(streams: list[list[np.ndarray]], wait_ms: float = 5.0) -> tuple[list[list[VadEvent]], VadBatcher]:
    batcher = VadBatcher(SileroVad.shared(), max_wait_ms=wait_ms)
    events: list[list[VadEvent]] = [[] for _ in streams]
    segs = [VadSegmenter(VadSettings(), vad=batcher, on_event=events[i].append) for i in range(len(streams))]
    for k in range(max(len(s) for s in streams)):
        for i, frames in enumerate(streams):
            if k < len(frames):
                segs[i].push(frames[k], (k + 1) * STEP * 62_500)  # synthetic clock: 62.5 µs a sample
        await asyncio.sleep(0)  # lets a batch whose streams are all ready run
    await asyncio.sleep(0.1)  # the last chunks' timers (a few ms)
    for seg in segs:
        seg.close()
    return events, batcher


def _sync_events(frames: list[np.ndarray]) -> list[VadEvent]:
    seg = VadSegmenter(VadSettings())
    out: list[VadEvent] = []
    for k, frame in enumerate(frames):
        out += seg.feed(frame, (k + 1) * STEP * 62_500)
    return out


def _edges(events: list[VadEvent]) -> list[tuple[str, int, int]]:
    return [(type(e).__name__, e.onset_ns, e.end_ns if isinstance(e, SpeechEnd) else e.confirmed_ns)
            for e in events if isinstance(e, (SpeechStart, SpeechEnd))]


async def test_batched_streams_hear_what_each_would_hear_alone(fixtures_dir: Path) -> None:
    names = ["en_question.wav", "zh_question.wav", "en_price_returns.wav"]
    # different lengths and leads, so chunks of different streams reach the batcher unaligned
    streams = [_frames(load_16k(fixtures_dir / n), lead) for n, lead in zip(names, (0, 160, 5_000))]
    batched, batcher = await _batched_events(streams)
    for frames, got in zip(streams, batched):
        want = _sync_events(frames)
        assert _edges(got) == _edges(want)
        assert len(_edges(got)) == 2, got  # one utterance each: a start and an end
        ends = [e for e in got if isinstance(e, SpeechEnd)]
        assert np.array_equal(ends[0].audio, [e for e in want if isinstance(e, SpeechEnd)][0].audio)
    assert batcher.stats.max_rows == 3 and batcher.stats.mean_rows > 1.5  # chunks did share calls
    assert batcher.stats.rows == sum(len(s) * STEP // CHUNK for s in streams)


async def test_a_lone_stream_is_scored_without_waiting() -> None:
    batcher = VadBatcher(SileroVad.shared(), max_wait_ms=30.0)
    seen: list[float] = []
    stream = batcher.vad.stream()
    batcher.register(stream)
    batcher.submit(stream, np.zeros(CHUNK + 64, np.float32), seen.append)
    await asyncio.sleep(0)  # one loop iteration, far less than the 30 ms timer
    assert len(seen) == 1 and seen[0] < 0.1


async def test_a_stream_waits_for_the_others_at_most_its_timer() -> None:
    batcher = VadBatcher(SileroVad.shared(), max_wait_ms=5.0)
    a, b = batcher.vad.stream(), batcher.vad.stream()
    batcher.register(a)
    batcher.register(b)
    seen: list[float] = []
    batcher.submit(a, np.zeros(CHUNK + 64, np.float32), seen.append)
    await asyncio.sleep(0)
    assert seen == []  # b may send a chunk soon: a waits for it ...
    await asyncio.sleep(0.05)
    assert len(seen) == 1  # ... but not past the timer
    assert batcher.stats.calls == 1 and batcher.stats.max_rows == 1


async def test_two_chunks_of_one_stream_run_in_order_with_the_state_carried() -> None:
    vad = SileroVad.shared()
    batcher = VadBatcher(vad, max_wait_ms=5.0)
    rng = np.random.default_rng(7)
    chunks = [rng.normal(0, 0.2, CHUNK).astype(np.float32) for _ in range(3)]
    ref = vad.stream()
    want = [ref.prob(c) for c in chunks]
    stream = vad.stream()
    batcher.register(stream)
    got: list[float] = []
    for c in chunks:  # all three submitted before any batch runs
        batcher.submit(stream, stream.model_input(c), got.append)
    await asyncio.sleep(0.05)
    assert got == pytest.approx(want, abs=1e-6)
    assert batcher.stats.calls == 3  # one row per call: a stream's next chunk needs its new state


async def test_a_closed_stream_gets_no_more_callbacks_and_a_failing_one_spares_the_others() -> None:
    batcher = VadBatcher(SileroVad.shared(), max_wait_ms=5.0)
    a, b, c = (batcher.vad.stream() for _ in range(3))
    for s in (a, b, c):
        batcher.register(s)
    seen: list[str] = []

    def boom(_: float) -> None:
        raise RuntimeError("a session bug")

    x = np.zeros(CHUNK + 64, np.float32)
    batcher.submit(a, x, lambda p: seen.append("a"))
    batcher.submit(b, x, boom)
    batcher.unregister(a)  # a leaves with a chunk waiting
    batcher.submit(c, x, lambda p: seen.append("c"))
    await asyncio.sleep(0.05)
    assert seen == ["c"]
    with pytest.raises(RuntimeError):
        batcher.submit(a, x, seen.append)  # not registered any more


def test_a_batched_segmenter_refuses_the_inline_feed() -> None:
    batcher = VadBatcher(SileroVad.shared())
    seg = VadSegmenter(VadSettings(), vad=batcher)
    with pytest.raises(RuntimeError):
        seg.feed(np.zeros(STEP, np.int16), 0)
    seg.close()
    assert batcher.streams == 0


def test_wait_must_be_within_one_chunk() -> None:
    for bad in (0, -1, 33):
        with pytest.raises(ValueError):
            VadBatcher(SileroVad.shared(), max_wait_ms=bad)
