"""Shadowing: a send track whose source can be swapped at any time, and a latest-frame fan-out."""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from typing import Any, Literal, cast

import av
import numpy as np
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

log = logging.getLogger(__name__)

AUDIO_RATE = 48_000
AUDIO_FRAME_SAMPLES = 960  # 20 ms
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
BLACK_WIDTH, BLACK_HEIGHT, BLACK_FPS = 320, 240, 15


def black_frame(width: int = BLACK_WIDTH, height: int = BLACK_HEIGHT) -> VideoFrame:
    """A black yuv420p frame (Y=16, U=V=128 is video black)."""
    yuv = np.empty((height * 3 // 2, width), dtype=np.uint8)
    yuv[:height] = 16
    yuv[height:] = 128
    return VideoFrame.from_ndarray(yuv, format="yuv420p")


class _AudioNormalizer:
    """Any audio frame → a NEW 48 kHz mono s16 frame.

    aiortc's Opus encoder owns an AudioResampler fixed to the first frame's format; if the
    layout or rate changed when we switch sources it raises. So everything we send is
    normalized, and always copied: frames from a relay are shared by subscribers and encoded
    in executor threads, so we must not rewrite their pts in place.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None

    def __call__(self, frame: AudioFrame) -> np.ndarray:
        if frame.format.name == "s16" and frame.sample_rate == AUDIO_RATE:
            pcm = frame.to_ndarray().reshape(-1)
            channels = len(frame.layout.channels)
            if channels == 1:
                return pcm
            # packed s16: interleaved samples; average channels without a per-sample loop
            return pcm.reshape(-1, channels).mean(axis=1).astype(np.int16)
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
        try:
            out = self._resampler.resample(frame)
        except ValueError:  # the source changed format mid-stream: rebuild once
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
            out = self._resampler.resample(frame)
        if not out:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in out])


class SwitchableTrack(MediaStreamTrack):
    """Send track that forwards ``source`` frames, or paced silence/black without one.

    A source ending (MediaStreamError) switches back to silence/black. Output timestamps are
    our own and continuous, so the remote decoder never sees a jump when we switch.
    """

    def __init__(self, kind: Literal["audio", "video"]) -> None:
        if kind not in ("audio", "video"):
            raise ValueError(f"kind must be 'audio' or 'video', got {kind!r}")
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._switched: asyncio.Future[None] | None = None
        self._normalizer = _AudioNormalizer()
        self._pts = 0  # audio: samples at 48 kHz sent so far
        self._t0_ns: int | None = None  # video pts origin
        self._next_ns: int | None = None  # when the next filler frame is due
        self.frames_from_source = 0
        self.frames_filler = 0

    @property
    def source(self) -> MediaStreamTrack | None:
        return self._source

    def set_source(self, track: MediaStreamTrack | None) -> None:
        """Forward ``track`` from now on (None: silence/black). Wakes a pending recv()."""
        if track is not None and track.kind != self.kind:
            raise ValueError(f"cannot feed a {track.kind} source into a {self.kind} track")
        if track is self._source:
            return
        self._source = track
        self._normalizer = _AudioNormalizer()
        self._next_ns = None  # restart the filler clock: no burst of catch-up frames
        if self._switched is not None and not self._switched.done():
            self._switched.set_result(None)

    async def recv(self) -> AudioFrame | VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            source = self._source
            if source is None:
                return await self._filler()
            frame = await self._recv_from(source)
            if frame is not None:
                self.frames_from_source += 1
                return self._restamp(frame)
            # switched away (or the source ended): loop and use whatever is current now

    async def _recv_from(self, source: MediaStreamTrack) -> AudioFrame | VideoFrame | None:
        loop = asyncio.get_running_loop()
        self._switched = loop.create_future()
        # aiortc types recv() as Frame | Packet; a media track's frames are Audio/VideoFrames
        pending = cast("asyncio.Future[AudioFrame | VideoFrame]", asyncio.ensure_future(source.recv()))
        waiting: set[asyncio.Future[Any]] = {pending, self._switched}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pending.cancel()
            raise
        if not pending.done():
            pending.cancel()
            return None
        try:
            return pending.result()
        except Exception as exc:  # MediaStreamError = ended; anything else must not kill the sender
            if not isinstance(exc, MediaStreamError):
                log.warning("source %s failed (%r), back to %s filler", source.id, exc, self.kind)
            if self._source is source:
                self.set_source(None)
            return None

    async def _filler(self) -> AudioFrame | VideoFrame:
        period_ns = 20_000_000 if self.kind == "audio" else 1_000_000_000 // BLACK_FPS
        now = time.perf_counter_ns()
        if self._next_ns is None:
            self._next_ns = now
        elif self._next_ns > now:
            loop = asyncio.get_running_loop()
            self._switched = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._switched), (self._next_ns - now) / 1e9)
            except asyncio.TimeoutError:
                pass
            if self._source is not None:  # a source arrived while we waited
                return await self.recv()
        self._next_ns += period_ns
        self.frames_filler += 1
        if self.kind == "audio":
            frame = AudioFrame.from_ndarray(
                np.zeros((1, AUDIO_FRAME_SAMPLES), dtype=np.int16), format="s16", layout="mono"
            )
            frame.sample_rate = AUDIO_RATE
            return self._restamp_audio(frame)
        # a fresh frame each time: the encoder thread reads pts after we return
        return self._restamp_video(black_frame())

    def _restamp(self, frame: AudioFrame | VideoFrame) -> AudioFrame | VideoFrame:
        if isinstance(frame, AudioFrame):
            pcm = self._normalizer(frame)
            out = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            out.sample_rate = AUDIO_RATE
            return self._restamp_audio(out)
        copy = VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
        return self._restamp_video(copy)

    def _restamp_audio(self, frame: AudioFrame) -> AudioFrame:
        frame.pts = self._pts
        frame.time_base = AUDIO_TIME_BASE
        self._pts += frame.samples
        return frame

    def _restamp_video(self, frame: VideoFrame) -> VideoFrame:
        now = time.perf_counter_ns()
        if self._t0_ns is None:
            self._t0_ns = now
        frame.pts = (now - self._t0_ns) * VIDEO_CLOCK // 1_000_000_000
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        if self._switched is not None and not self._switched.done():
            self._switched.set_result(None)


class ShadowRelay:
    """Fan-out of live tracks to several consumers (mentor, recorder, QA).

    Wraps aiortc's MediaRelay. Unbuffered (default) subscribers get only the latest frame, so
    a slow consumer skips frames instead of growing a queue.
    """

    def __init__(self) -> None:
        self._relay = MediaRelay()
        self._proxies: list[MediaStreamTrack] = []
        self._closed = False

    def subscribe(self, track: MediaStreamTrack, buffered: bool = False) -> MediaStreamTrack:
        if self._closed:
            raise RuntimeError("ShadowRelay is closed")
        proxy = self._relay.subscribe(track, buffered=buffered)
        self._proxies.append(proxy)
        return proxy

    async def close(self) -> None:
        """Stop every proxy and the relay's reader tasks (MediaRelay never cancels them)."""
        self._closed = True
        for proxy in self._proxies:
            proxy.stop()
        self._proxies.clear()
        # pinned aiortc 1.16.0: the per-source reader tasks live in a name-mangled dict
        tasks: dict = getattr(self._relay, "_MediaRelay__tasks", {})
        pending = [t for t in list(tasks.values()) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
