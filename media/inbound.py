"""Inbound audio: a received track → mono int16 at the coach's rate, via one owned task."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from coach.contracts import COACH_SAMPLE_RATE
from coach.tasks import TaskOwner

log = logging.getLogger(__name__)

PcmCallback = Callable[[np.ndarray, int], None]
_GAP_NS = 100_000_000  # arrivals further apart than this (5 frames) count as a gap


class InboundAudio:
    """Reads ``track`` until it ends and hands ``on_pcm(int16 mono, t_ns_at_receipt)`` each frame.

    ``on_pcm`` runs on the event loop and must be quick (the coach's VAD is ~80 µs per chunk).
    """

    def __init__(self, track: MediaStreamTrack, on_pcm: PcmCallback, sample_rate: int = COACH_SAMPLE_RATE) -> None:
        if track.kind != "audio":
            raise ValueError(f"InboundAudio needs an audio track, got {track.kind!r}")
        if not 8_000 <= sample_rate <= 48_000:
            raise ValueError(f"unsupported sample rate {sample_rate}")
        self.track = track
        self.on_pcm = on_pcm
        self.sample_rate = sample_rate
        self._resampler: av.AudioResampler | None = None
        self._tasks = TaskOwner("inbound-audio")
        self._task: asyncio.Task[None] | None = None
        self._last_ns: int | None = None
        self._last_pts_end: int | None = None
        self.stats: dict[str, Any] = {
            "frames": 0,
            "samples_out": 0,
            "gaps": 0,  # arrival pauses > 100 ms
            "pts_gaps": 0,  # timestamp jumps (lost/concealed packets upstream)
            "max_interval_ms": 0.0,
            "callback_errors": 0,
            "first_frame_ns": None,
            "last_frame_ns": None,
            "ended": False,
        }

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("InboundAudio already started")
        self._task = self._tasks.spawn(self._run(), "inbound-audio")

    async def stop(self) -> None:
        self._task = None
        await self._tasks.close()  # a failure was logged by the owner

    async def wait_ended(self) -> None:
        """Wait until the track ends (or stop() is called)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    frame = await self.track.recv()
                except MediaStreamError:
                    break
                t_ns = time.perf_counter_ns()
                if not isinstance(frame, AudioFrame):
                    continue  # an audio track yields AudioFrames; aiortc's type says Frame | Packet
                self._count(frame, t_ns)
                pcm = self._convert(frame)
                if pcm.size == 0:
                    continue
                self.stats["samples_out"] += pcm.size
                try:
                    self.on_pcm(pcm, t_ns)
                except Exception:  # keep receiving: one bad callback must not deafen the session
                    self.stats["callback_errors"] += 1
                    if self.stats["callback_errors"] == 1:
                        log.exception("on_pcm callback failed")
        finally:
            self.stats["ended"] = True

    def _convert(self, frame: AudioFrame) -> np.ndarray:
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
        try:
            out = self._resampler.resample(frame)
        except ValueError:  # the sender changed format mid-stream
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=self.sample_rate)
            out = self._resampler.resample(frame)
        if not out:
            return np.zeros(0, dtype=np.int16)
        if len(out) == 1:
            return out[0].to_ndarray().reshape(-1)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in out])

    def _count(self, frame: AudioFrame, t_ns: int) -> None:
        s = self.stats
        s["frames"] += 1
        if s["first_frame_ns"] is None:
            s["first_frame_ns"] = t_ns
        s["last_frame_ns"] = t_ns
        if self._last_ns is not None:
            interval = t_ns - self._last_ns
            s["max_interval_ms"] = max(s["max_interval_ms"], interval / 1e6)
            if interval > _GAP_NS:
                s["gaps"] += 1
        self._last_ns = t_ns
        if frame.pts is not None:
            if self._last_pts_end is not None and frame.pts > self._last_pts_end:
                s["pts_gaps"] += 1
            self._last_pts_end = frame.pts + frame.samples
