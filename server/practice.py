"""Media hooks: what the server runs on a primary participant's audio.

- trainee (practice room): inbound audio → CustomerAgent (VAD → STT → LLM → TTS) → paced output
  track on the same peer, plus live alerts, a stereo recording and, at the end, the scored report.
- streamer (shadowed stream): inbound audio → VAD (+ STT for the transcript) → live alerts for the
  mentor, plus a recording and a report.

The room engine (server/rooms.py) calls ``CoachHooks.attach`` after the offer is applied and before
the answer is made; what we return is closed when the session ends.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import weakref
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from coach.agent import CustomerAgent
from coach.alerts import LiveAlerts
from coach.providers.factory import Providers, build_providers
from coach.report import build_report
from coach.scenarios import Scenario, ScenarioError, get_scenario
from coach.settings import ProviderSettings
from coach.stream_health import rtp_counters
from coach.streamer import StreamerAnalysis
from coach.tasks import TaskOwner
from coach.vad import SileroVad
from media.inbound import InboundAudio
from media.outbound import PacedAudioTrack
from media.recorder import SessionRecorder
from media.video_recorder import VideoRecorder
from server.protocol import ProtocolError
from server.rooms import MediaContext
from server.settings import Settings, recordings_dir
from server.store.common import STORE_OUTAGE_ERRORS

log = logging.getLogger(__name__)

ALERT_TICK_S = 0.25
METRICS_EVERY_TICKS = 4
MAX_SESSION_EVENTS = 50_000  # report input kept in memory; far above a 1-hour session
ROOM_REPORT_EVENTS = ("tip", "tip_ack", "whisper")  # logged by the room, not the pipeline
RTP_STATS_EVERY_TICKS = 4  # the video receiver's counters once a second


def load_session_scenario(settings: Settings, scenario_id: str | None) -> Scenario:
    """The scenario named at join (or the configured default); unknown → ProtocolError."""
    wanted = scenario_id or settings.coach.default_scenario
    try:
        return get_scenario(settings.coach.scenarios_dir, wanted)
    except (KeyError, ScenarioError) as exc:
        raise ProtocolError("unknown_scenario", str(exc).strip("'\"")[:300]) from None


class SessionTap:
    """The SessionEvents a pipeline emits into: forwards to the room, feeds live alerts, and keeps
    the session's events for the final report (the room's log writer may still be flushing)."""

    def __init__(self, room_events: Any) -> None:
        self._room = room_events
        self.alerts: LiveAlerts | None = None
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        event = dict(event)
        event.setdefault("t_ns", time.perf_counter_ns())
        if event.get("type") != "metrics":  # live snapshots are not part of the record
            if len(self.events) < MAX_SESSION_EVENTS:
                self.events.append(event)
            elif len(self.events) == MAX_SESSION_EVENTS:
                self.events.append({"type": "truncated", "t_ns": event["t_ns"]})
                log.warning("session events over %d: the report covers the first part only", MAX_SESSION_EVENTS)
        self._room.emit(event)
        if self.alerts is not None and event.get("type") != "alert":
            self.alerts.on_event(event)


class _Pipeline:
    """Shared lifecycle of both pipelines: inbound pump, alert ticker, recorder, final report."""

    kind = "practice"

    def __init__(self, ctx: MediaContext, scenario: Scenario | None, speaker: str) -> None:
        self.ctx = ctx
        self.scenario = scenario
        self.speaker = speaker
        settings = ctx.settings
        self.language = scenario.language if scenario else (ctx.lang or "en")
        self.tap = SessionTap(ctx.events)
        self.tap.alerts = LiveAlerts(settings.coach.alerts, scenario, self.tap.emit, speaker=speaker,
                                     language=self.language)
        self.recorder: SessionRecorder | None = None
        if settings.media.record_audio:
            path = recordings_dir(settings) / f"{ctx.session_id}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.recorder = SessionRecorder(path)
        self.inbound: InboundAudio | None = None
        self.record_extra: dict[str, Any] = {}  # pipeline-specific fields of the session record
        self.tasks = TaskOwner(f"session:{ctx.session_id}")  # the alert ticker
        self._closed = False

    def start_common(self, on_pcm: Any) -> None:
        audio = next((t for t in self.ctx.remote_tracks if t.kind == "audio"), None)
        if audio is not None:
            self.inbound = InboundAudio(audio, on_pcm)
            self.inbound.start()
        self.tasks.spawn(self._tick(), f"alerts:{self.ctx.session_id}")
        self.tap.emit({
            "type": "session_config", "kind": self.kind, "scenario": self.scenario.id if self.scenario else None,
            "language": self.language, "speaker": self.speaker, "user": self.ctx.user, "wall_s": time.time(),
        })

    async def _tick(self) -> None:
        """Alerts every 250 ms; a live-metrics snapshot for the mentor's panel every second."""
        alerts = self.tap.alerts
        assert alerts is not None
        for n in itertools.count(1):
            await asyncio.sleep(ALERT_TICK_S)
            now = time.perf_counter_ns()
            alerts.tick(now)
            if n % METRICS_EVERY_TICKS == 0:
                self.tap.emit(alerts.snapshot(now))

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop the pump and the ticker, then the pipeline's own work, then write the report."""
        if self._closed:
            return
        self._closed = True
        await self.tasks.close()
        if self.inbound is not None:
            await self.inbound.stop()
        await self.stop_work()
        await self.finish()

    async def stop_work(self) -> None:
        """Cancel what the pipeline itself started (overridden)."""

    async def _report_events(self) -> list[dict[str, Any]]:
        """The pipeline's events plus the room's tips, acks and whispers (logged by the room)."""
        try:
            room_events = await self.ctx.store.events(self.ctx.session_id, list(ROOM_REPORT_EVENTS))
        except Exception:  # noqa: BLE001 - the report stands without them
            log.exception("session %s: reading the room's events failed", self.ctx.session_id)
            room_events = []
        extra = [ev for ev in room_events if ev.get("type") in ROOM_REPORT_EVENTS and isinstance(ev.get("t_ns"), int)]
        return sorted(self.tap.events + extra, key=lambda ev: ev.get("t_ns") or 0)

    async def finish(self) -> None:
        """Close the recording and store the report in the session record."""
        ctx = self.ctx
        recording: str | None = None
        if self.recorder is not None:
            try:
                path = await self.recorder.close()
                # The file name only: records never show the server's folders (served from recordings/).
                recording = path.name if self.recorder.duration_s > 0 else None
            except Exception:  # noqa: BLE001 - a failed recording must not lose the report
                log.exception("session %s: closing the recording failed", ctx.session_id)
        try:
            try:
                record = await ctx.store.get_session(ctx.session_id) or {"session_id": ctx.session_id}
            except STORE_OUTAGE_ERRORS:  # outage: the report is saved now, merged when the store is back
                record = {"session_id": ctx.session_id}
            record.update(scenario=self.scenario.id if self.scenario else None, language=self.language,
                          recording=recording, **self.record_extra)
            events = await self._report_events()
            # ~0.3 s for an hour-long session: keep it off the event loop.
            report = await asyncio.get_running_loop().run_in_executor(
                None, build_report, record, events, self.scenario, ctx.settings.coach.alerts)
            # What the session list shows without loading every report.
            record.update(report=report, turns=len(report["latency"]), scenario_title=report["scenario_title"])
            await ctx.store.save_session(record)
        except Exception:  # noqa: BLE001
            log.exception("session %s: building the report failed", ctx.session_id)


class PracticeSession(_Pipeline):
    """Trainee ↔ AI customer."""

    kind = "practice"

    def __init__(self, ctx: MediaContext, scenario: Scenario, providers: Providers, vad: SileroVad) -> None:
        super().__init__(ctx, scenario, speaker="trainee")
        self.providers = providers
        on_frame = self.recorder.on_output_frame if self.recorder else None
        self.output = PacedAudioTrack.from_settings(ctx.settings.media, on_frame=on_frame)
        self.agent = CustomerAgent(session_id=ctx.session_id, scenario=scenario, providers=providers,
                                   output=self.output, events=self.tap, settings=ctx.settings.coach, vad=vad)

    def _on_pcm(self, pcm: np.ndarray, t_ns: int) -> None:
        self.agent.feed(pcm, t_ns)
        if self.recorder is not None:
            self.recorder.add_left(pcm, t_ns)

    async def start(self) -> None:
        self.ctx.pc.addTrack(self.output)  # reuses the offer's audio transceiver (sendrecv)
        await self.agent.start()
        self.start_common(self._on_pcm)

    async def stop_work(self) -> None:
        await self.agent.close()
        self.output.stop()
        await self.providers.aclose()


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


class StreamAnalysis(_Pipeline):
    """Shadowed streamer: coach.streamer.StreamerAnalysis on the audio (VAD, STT, live alerts)
    and the video (stream health from decoded frames and the receiver's RTP counters)."""

    kind = "shadow"

    def __init__(self, ctx: MediaContext, scenario: Scenario | None, providers: Providers | None,
                 vad: SileroVad) -> None:
        super().__init__(ctx, scenario, speaker="streamer")
        self.providers = providers
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

    @staticmethod
    async def _drain(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            return

    async def stop_work(self) -> None:
        if self.video_recorder is not None:
            path = await self.video_recorder.stop()
            self.record_extra["video_recording"] = path.name if path else None
        await self._video.close()
        await self.analysis.close()
        if self.providers is not None:
            await self.providers.aclose()


def preload_providers(settings: ProviderSettings) -> None:
    """Do the imports and loads that would otherwise stall the event loop on the first turn.

    The openai package loads each resource module on first attribute access (measured here:
    ~1 s of the first turn's STT/LLM/TTS time, spent on the event loop); whisper takes 1-2 s to
    assemble and load.
    """
    if settings.stt == "whisper":
        from coach.providers.whisper import preload

        preload(settings.whisper)  # loads in the whisper thread; does not block here
    if "openai" in (settings.stt, settings.llm, settings.tts):
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key="preload", base_url="http://127.0.0.1:9/v1")
        _ = (client.chat.completions, client.audio.transcriptions, client.audio.speech)


class CoachHooks:
    """The default MediaHooks of `livecoach serve`: AI customer for trainees, analysis for streamers.

    Build it before the loop serves (``make_app`` time): the constructor preloads providers.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._vad: SileroVad | None = None
        self._sessions: weakref.WeakSet[_Pipeline] = weakref.WeakSet()
        if settings is not None:
            preload_providers(settings.coach.providers)
            self._vad = SileroVad.shared()

    @property
    def live_sessions(self) -> int:
        return sum(1 for session in self._sessions if not session.closed)

    def _shared_vad(self) -> SileroVad:
        if self._vad is None:
            self._vad = SileroVad.shared()
        return self._vad

    async def attach(self, ctx: MediaContext) -> PracticeSession | StreamAnalysis | None:
        session: PracticeSession | StreamAnalysis
        if ctx.role == "trainee":
            scenario = load_session_scenario(ctx.settings, ctx.scenario)
            providers = build_providers(ctx.settings.coach.providers, scenario)
            session = PracticeSession(ctx, scenario, providers, self._shared_vad())
        elif ctx.role == "streamer":
            shown = load_session_scenario(ctx.settings, ctx.scenario) if ctx.scenario else None
            try:
                providers = build_providers(ctx.settings.coach.providers, shown)
            except Exception:  # noqa: BLE001 - analysis without transcripts is still useful
                log.exception("streamer analysis: providers unavailable, VAD only")
                providers = None
            session = StreamAnalysis(ctx, shown, providers, self._shared_vad())
        else:
            return None
        self._sessions.add(session)
        try:
            await session.start()
        except BaseException:
            await session.close()
            raise
        return session
