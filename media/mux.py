"""One file per shadowed stream: the camera's MP4 with the session's stereo WAV muxed in.

Done after the session, never on the event loop: ``RecordingMuxer`` runs the muxes one at a time on
its own worker thread (niced where the OS allows), so many sessions ending together take at most
one core and never the loop's default executor (reports are built there). The video packets are
copied, not re-encoded; the WAV is encoded to AAC (what every browser plays in MP4). The output is
written under a temporary name and renamed when complete: a reader never sees half a file, and a
failed or aborted mux leaves only the separate video and WAV, untouched.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import os
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np

from coach.tasks import TaskOwner

log = logging.getLogger(__name__)

AAC_FRAME = 1024  # samples per AAC frame
AAC_BIT_RATE = 96_000


class MuxAborted(Exception):
    """``abort`` was set (the server is shutting down): nothing was written."""


def _audio_frames(wav: wave.Wave_read) -> Any:
    """(pts in samples, fltp frame) of the whole WAV, AAC-frame sized."""
    rate, channels = wav.getframerate(), wav.getnchannels()
    layout = "stereo" if channels == 2 else "mono"
    time_base = fractions.Fraction(1, rate)
    pts = 0
    while raw := wav.readframes(AAC_FRAME):
        pcm = np.frombuffer(raw, dtype=np.int16).reshape(-1, channels).T.astype(np.float32) / 32768.0
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, pts, time_base
        yield pts, frame
        pts += pcm.shape[1]


def mux_audio_into_video(video: Path, wav: Path, out: Path, video_offset_s: float,
                         abort: threading.Event | None = None) -> Path:
    """Write ``out``: ``video``'s packets (starting ``video_offset_s`` into the audio) + ``wav`` as AAC.

    Blocking (call it in a thread). Raises on failure or ``MuxAborted``; ``out`` then does not exist.
    """
    part = out.with_name(out.name + ".part")
    try:
        with av.open(str(video)) as source, wave.open(str(wav), "rb") as audio, \
                av.open(str(part), mode="w", format="mp4") as target:
            video_in = source.streams.video[0]
            time_base = video_in.time_base or fractions.Fraction(1, 90_000)
            video_out = target.add_stream_from_template(video_in)
            rate = audio.getframerate()
            layout = "stereo" if audio.getnchannels() == 2 else "mono"
            audio_out: Any = target.add_stream("aac", rate=rate, layout=layout)
            audio_out.bit_rate = AAC_BIT_RATE
            shift = round(max(0.0, video_offset_s) / time_base)
            frames = _audio_frames(audio)
            pending: tuple[int, av.AudioFrame] | None = next(frames, None)

            def audio_until(t_s: float | None) -> None:
                """Encode and mux the audio before ``t_s`` (all of it for None): interleaved output."""
                nonlocal pending
                while pending is not None and (t_s is None or pending[0] / rate < t_s):
                    if abort is not None and abort.is_set():
                        raise MuxAborted(str(out))
                    for packet in audio_out.encode(pending[1]):
                        target.mux(packet)
                    pending = next(frames, None)

            for packet in source.demux(video_in):
                if packet.dts is None:
                    continue  # the demuxer's flush packet
                packet.pts = None if packet.pts is None else packet.pts + shift
                packet.dts += shift
                audio_until(float(packet.dts * time_base))
                packet.stream = video_out
                target.mux(packet)
            audio_until(None)
            for packet in audio_out.encode(None):
                target.mux(packet)
        os.replace(part, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return out


def _lower_priority() -> None:
    """The mux thread yields the CPU to live sessions (Linux: nice applies per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


class RecordingMuxer:
    """Muxes finished sessions in order on one worker thread; ``close()`` aborts and joins it."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording-mux",
                                            initializer=_lower_priority)
        self._abort = threading.Event()
        self._tasks = TaskOwner("recording-mux")
        self.done = 0
        self.failed = 0

    def submit(self, video: Path, wav: Path, out: Path, video_offset_s: float) -> asyncio.Task[Path | None] | None:
        """Start muxing (queued behind earlier ones); the task gives ``out``, or None if it failed.
        None once closed (shutting down): the separate files stand."""
        if self._tasks.closed:
            log.info("not muxing %s: shutting down", out.name)
            return None
        return self._tasks.spawn(self._run(video, wav, out, video_offset_s), f"mux:{out.name}")

    async def _run(self, video: Path, wav: Path, out: Path, video_offset_s: float) -> Path | None:
        loop = asyncio.get_running_loop()
        try:
            path = await loop.run_in_executor(self._executor, mux_audio_into_video, video, wav, out,
                                              video_offset_s, self._abort)
        except MuxAborted:
            return None
        except Exception:  # noqa: BLE001 - the separate video and WAV stay; the session is saved
            self.failed += 1
            log.exception("muxing %s + %s failed", video.name, wav.name)
            return None
        self.done += 1
        return path

    async def close(self) -> None:
        """Abort the running mux (it stops within one packet), drop queued ones, join the thread."""
        self._abort.set()
        await self._tasks.close()
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
