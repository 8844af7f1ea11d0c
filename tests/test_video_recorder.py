"""Shadowed streams keep the streamer's video: encoded off the event loop, readable afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av

from media.video_recorder import VideoRecorder
from qa.audio import SyntheticVideoTrack


async def test_video_is_recorded_to_a_playable_mp4(tmp_path: Path) -> None:
    track = SyntheticVideoTrack(width=320, height=240, fps=15)
    recorder = VideoRecorder(tmp_path / "rec" / "s1.mp4")
    recorder.start(track)
    await asyncio.sleep(1.5)
    path = await recorder.stop()
    track.stop()
    assert path is not None and path.stat().st_size > 1000
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        duration_s = float(frames[-1].pts * stream.time_base)
    assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
    assert len(frames) == recorder.frames_written >= 15  # ~22 at 15 fps in 1.5 s
    # The file's timeline follows the frames' arrival: about the 1.5 s recorded (a stalled loop
    # stretches it; it can never be much shorter).
    assert 1.0 <= duration_s <= 1.5 + 5
    assert recorder.dropped_frames == 0 and recorder.error is None


async def test_stop_without_frames_leaves_no_file(tmp_path: Path) -> None:
    recorder = VideoRecorder(tmp_path / "none.mp4")
    track = SyntheticVideoTrack()
    track.stop()  # ended before the first frame
    recorder.start(track)
    assert await recorder.stop() is None
    assert not (tmp_path / "none.mp4").exists()
