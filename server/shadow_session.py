"""The shadowed streamer's pipeline: analysis for the mentor, a recording with the streamer's voice
(left), the mentor's whisper (right) and camera, and a report."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from coach.providers.factory import Providers
from coach.scenarios import Scenario
from coach.stream_health import rtp_counters
from coach.streamer import StreamerAnalysis
from coach.tasks import TaskOwner
from coach.vad import ChunkBatcher, SileroVad
from media.mux import RecordingMuxer
from media.video_recorder import VideoRecorder
from server.pipeline import ALERT_TICK_S, SessionPipeline
from server.rooms import MediaContext, WhisperTap
from server.settings import recordings_dir

log = logging.getLogger(__name__)

RTP_STATS_EVERY_TICKS = 4  # the video receiver's counters once a second


class FrameTap(MediaStreamTrack):
    """Passes a video track's frames through, telling ``on_frame(t_ns, width, height)`` of each."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, on_frame: Any) -> None:
        super().__init__()
        self._source = source
        self._on_frame = on_frame

    async def recv(self) -> Any:
        frame: Any = await self._source.recv()  # a decoded av.VideoFrame on a video track
        self._on_frame(time.perf_counter_ns(), frame.width, frame.height)
        return frame


class StreamAnalysis(SessionPipeline):
    """Shadowed streamer: coach.streamer.StreamerAnalysis on the audio (VAD, STT, live alerts)
    and the video (stream health from decoded frames and the receiver's RTP counters)."""

    kind = "shadow"
    channels = {"left": "streamer", "right": "mentor"}  # the right channel: the mentor's whisper

    def __init__(self, ctx: MediaContext, scenario: Scenario | None, providers: Providers | None,
                 vad: SileroVad | ChunkBatcher, muxer: RecordingMuxer | None = None) -> None:
        super().__init__(ctx, scenario, speaker="streamer")
        self.providers = providers
        self.muxer = muxer
        self.analysis = StreamerAnalysis(
            emit=self.tap.emit, scenario=scenario, language=self.language,
            alert_settings=ctx.settings.coach.alerts, vad_settings=ctx.settings.coach.vad, vad=vad,
            stt=providers.stt if providers else None, name=ctx.session_id)
        self.tap.alerts = None  # the analysis feeds its own alerts
        self.video_recorder: VideoRecorder | None = None
        self._video = TaskOwner(f"video-health:{ctx.session_id}")

    def _on_pcm(self, pcm: np.ndarray, t_ns: int) -> None:
        if self.recorder is not None:
            self.recorder.add_left(pcm, t_ns)
        self.analysis.feed_pcm(pcm, t_ns)

    def _on_whisper(self, pcm: np.ndarray, t_ns: int) -> None:
        """The mentor's whisper, stamped at receipt (only while whisper is on): the right channel."""
        if self.recorder is not None:
            self.recorder.add_right(pcm, t_ns, WhisperTap.RATE)

    async def _tick(self) -> None:
        """Analysis every 250 ms (alerts, due viewer questions, snapshots); RTP counters each second."""
        video_receiver = next((r for r in self.ctx.pc.getReceivers() if r.track and r.track.kind == "video"), None)
        self.analysis.start(time.perf_counter_ns())
        for n in itertools.count(1):
            await asyncio.sleep(ALERT_TICK_S)
            if video_receiver is not None and n % RTP_STATS_EVERY_TICKS == 0:
                try:
                    counters = rtp_counters(await video_receiver.getStats())
                except Exception:  # noqa: BLE001 - stats are best effort; the stream goes on
                    log.exception("session %s: video receiver stats failed", self.ctx.session_id)
                    counters = None
                if counters is not None:
                    self.analysis.on_rtp_counters(time.perf_counter_ns(), counters)
            self.analysis.tick(time.perf_counter_ns())

    async def start(self) -> None:
        self.start_common(self._on_pcm)
        self.ctx.whisper.connect(self._on_whisper)
        video = next((t for t in self.ctx.remote_tracks if t.kind == "video"), None)
        if video is None:
            return
        tapped = FrameTap(video, self.analysis.on_video_frame)
        if self.ctx.settings.media.record_video:
            path = recordings_dir(self.ctx.settings) / f"{self.ctx.session_id}.mp4"
            self.video_recorder = VideoRecorder(path)
            self.video_recorder.start(tapped)
        else:  # nobody else reads the frames: drain them for the health figures
            self._video.spawn(self._drain(tapped), f"video-health:{self.ctx.session_id}")

    async def finish(self) -> None:
        """Report first, then (in the background, off the loop) one MP4 with the camera and both
        voices; until it is written, or if it fails, the separate video and WAV stand."""
        wav = await self.close_recording()
        video = self.video_recorder.path if self.record_extra.get("video_recording") and self.video_recorder else None
        video_t0 = self.video_recorder.t0_ns if self.video_recorder else None
        mux = self.muxer is not None and wav is not None and video is not None and video_t0 is not None
        if mux and self.recorder is not None and video_t0 is not None:
            self.record_extra["av_recording"] = f"{self.ctx.session_id}.av.mp4"
            self.record_extra["video_offset_s"] = round((video_t0 - self.recorder.t0_ns) / 1e9, 3)
        await self.save_report(wav)
        if mux and self.muxer is not None and wav is not None and video is not None:
            self.muxer.submit(video, wav, wav.with_name(self.record_extra["av_recording"]),
                              self.record_extra["video_offset_s"])

    @staticmethod
    async def _drain(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            return

    async def stop_work(self) -> None:
        self.ctx.whisper.connect(None)
        if self.video_recorder is not None:
            path = await self.video_recorder.stop()
            self.record_extra["video_recording"] = path.name if path else None
        await self._video.close()
        await self.analysis.close()
        if self.providers is not None:
            await self.providers.aclose()
