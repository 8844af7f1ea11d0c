"""What both media pipelines share: the events tap, the inbound pump, the alert ticker, the
stereo recording and the final report (server/practice.py: trainee; server/shadow_session.py: streamer)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from pathlib import Path
from typing import Any

from coach.alerts import LiveAlerts
from coach.report import build_report
from coach.scenarios import Scenario
from coach.tasks import TaskOwner
from media.inbound import InboundAudio
from media.recorder import SessionRecorder
from server.rooms import MediaContext
from server.settings import recordings_dir
from server.store.common import STORE_OUTAGE_ERRORS

log = logging.getLogger(__name__)

ALERT_TICK_S = 0.25
METRICS_EVERY_TICKS = 4
MAX_SESSION_EVENTS = 50_000  # report input kept in memory; far above a 1-hour session
ROOM_REPORT_EVENTS = ("tip", "tip_ack", "whisper")  # logged by the room, not the pipeline


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


class SessionPipeline:
    """Shared lifecycle of both pipelines: inbound pump, alert ticker, recorder, final report."""

    kind = "practice"
    channels = {"left": "trainee", "right": "customer"}  # who is on each side of the stereo WAV

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
        await self.save_report(await self.close_recording())

    async def close_recording(self) -> Path | None:
        """Finish the WAV; its path, or None when nothing was recorded (or writing it failed)."""
        if self.recorder is None:
            return None
        try:
            path = await self.recorder.close()
            return path if self.recorder.duration_s > 0 else None
        except Exception:  # noqa: BLE001 - a failed recording must not lose the report
            log.exception("session %s: closing the recording failed", self.ctx.session_id)
            return None

    async def save_report(self, wav: Path | None) -> None:
        ctx = self.ctx
        try:
            try:
                record = await ctx.store.get_session(ctx.session_id) or {"session_id": ctx.session_id}
            except STORE_OUTAGE_ERRORS:  # outage: the report is saved now, merged when the store is back
                record = {"session_id": ctx.session_id}
            # The file name only: records never show the server's folders (served from recordings/).
            record.update(scenario=self.scenario.id if self.scenario else None, language=self.language,
                          recording=wav.name if wav else None, recording_channels=self.channels if wav else None,
                          **self.record_extra)
            events = await self._report_events()
            # ~0.3 s for an hour-long session: keep it off the event loop.
            report = await asyncio.get_running_loop().run_in_executor(
                None, build_report, record, events, self.scenario, ctx.settings.coach.alerts)
            # What the session list shows without loading every report.
            record.update(report=report, turns=len(report["latency"]), scenario_title=report["scenario_title"])
            await ctx.store.save_session(record)
        except Exception:  # noqa: BLE001
            log.exception("session %s: building the report failed", ctx.session_id)
