"""Record a video track to MP4 (H.264) without encoding on the event loop.

aiortc's MediaRecorder encodes inside its asyncio task, which stalls every session on the loop
for a camera-sized frame. Here one owned task only hands decoded frames to a bounded queue; a
thread encodes and muxes. A full queue drops frames (counted): a slow disk costs frames, never
latency for the live sessions.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from coach.tasks import TaskOwner

log = logging.getLogger(__name__)

_STOP = object()
MS = fractions.Fraction(1, 1000)


class VideoRecorder:
    def __init__(self, path: str | Path, max_queue: int = 30, codec: str = "libx264") -> None:
        self.path = Path(path)
        self.codec = codec
        self.frames_written = 0
        self.dropped_frames = 0
        self.error: str | None = None
        self._queue: queue.Queue[Any] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._encode_all, name=f"video-rec:{self.path.name}", daemon=True)
        self._tasks = TaskOwner(f"video-rec:{self.path.name}")
        self._t0_ns: int | None = None

    @property
    def t0_ns(self) -> int | None:
        """perf_counter_ns of the first frame (the file's time 0); None before one came."""
        return self._t0_ns

    def start(self, track: MediaStreamTrack) -> None:
        if track.kind != "video":
            raise ValueError(f"VideoRecorder needs a video track, got {track.kind!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        self._tasks.spawn(self._pump(track), f"video-pump:{self.path.name}")

    async def _pump(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.perf_counter_ns()
                if self._t0_ns is None:
                    self._t0_ns = now
                try:
                    self._queue.put_nowait((frame, (now - self._t0_ns) // 1_000_000))
                except queue.Full:
                    self.dropped_frames += 1
        except MediaStreamError:
            return

    async def stop(self) -> Path | None:
        """Stop reading, finish the file; returns its path, or None when nothing was recorded."""
        await self._tasks.close()
        if self._thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, self._finish)
        return self.path if self.frames_written and self.error is None else None

    def _finish(self) -> None:
        self._queue.put(_STOP)  # blocking put is fine here: we run in an executor thread
        self._thread.join()

    # ---- encoder thread -------------------------------------------------------------------

    def _encode_all(self) -> None:
        container: Any = None
        stream: Any = None
        last_pts = -1
        stopped = False
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    stopped = True
                    break
                frame, pts_ms = item
                if container is None:
                    container = av.open(str(self.path), mode="w")
                    stream = container.add_stream(self.codec, rate=30)
                    stream.width, stream.height = frame.width - frame.width % 2, frame.height - frame.height % 2
                    stream.pix_fmt = "yuv420p"
                    # Millisecond timestamps in the encoder too: at its default 1/rate, frames that
                    # arrive in a burst would share a timestamp and the muxer rejects them.
                    stream.time_base = stream.codec_context.time_base = MS
                if pts_ms <= last_pts:
                    continue  # two frames in the same millisecond: keep the first
                # A new frame, never the received one: relay subscribers share frame objects, and
                # the loop thread may restamp them while we encode here.
                out = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
                if (out.width, out.height) != (stream.width, stream.height):
                    out = out.reformat(width=stream.width, height=stream.height)
                out.pts, out.time_base = pts_ms, MS  # not stream.time_base: the muxer may change it
                last_pts = pts_ms
                for packet in stream.encode(out):
                    container.mux(packet)
                self.frames_written += 1
            if stream is not None:
                for packet in stream.encode(None):
                    container.mux(packet)
        except Exception as exc:  # noqa: BLE001 - a broken recording must not take the session down
            self.error = str(exc)
            log.exception("video recording %s failed", self.path)
            while not stopped:  # keep draining (the pump must never block) until stop() comes
                stopped = self._queue.get() is _STOP
        finally:
            if container is not None:
                container.close()
