"""Media hooks: what the server runs on a primary participant's audio.

- trainee (practice room): inbound audio → CustomerAgent (VAD → STT → LLM → TTS) → paced output
  track on the same peer, plus live alerts, a stereo recording and, at the end, the scored report.
- streamer (shadowed stream): inbound audio → VAD (+ STT for the transcript) → live alerts for the
  mentor, plus a recording (streamer left, the mentor's whisper right, the camera) and a report.

The room engine (server/rooms.py) calls ``CoachHooks.attach`` after the offer is applied and before
the answer is made; what we return is closed when the session ends. The streamer's pipeline is
server/shadow_session.py; what both share, server/pipeline.py.
"""

from __future__ import annotations

import logging
import weakref

import numpy as np

from coach.agent import CustomerAgent
from coach.contracts import COACH_SAMPLE_RATE
from coach.providers.factory import Providers, build_providers
from coach.scenarios import Scenario, ScenarioError, get_scenario
from coach.settings import ProviderSettings
from coach.vad import ChunkBatcher, SileroVad
from coach.vad_batch import VadBatcher
from media.inline_decode import decode_received_audio_at
from media.mux import RecordingMuxer
from media.opus_out import add_output_track, output_track
from server.pipeline import SessionPipeline
from server.protocol import ProtocolError
from server.rooms import MediaContext
from server.settings import Settings, recordings_dir
from server.shadow_session import StreamAnalysis

__all__ = ["CoachHooks", "PracticeSession", "StreamAnalysis", "load_session_scenario", "recordings_dir"]

log = logging.getLogger(__name__)


def load_session_scenario(settings: Settings, scenario_id: str | None) -> Scenario:
    """The scenario named at join (or the configured default); unknown → ProtocolError."""
    wanted = scenario_id or settings.coach.default_scenario
    try:
        return get_scenario(settings.coach.scenarios_dir, wanted)
    except (KeyError, ScenarioError) as exc:
        raise ProtocolError("unknown_scenario", str(exc).strip("'\"")[:300]) from None


class PracticeSession(SessionPipeline):
    """Trainee ↔ AI customer."""

    kind = "practice"

    def __init__(self, ctx: MediaContext, scenario: Scenario, providers: Providers,
                 vad: SileroVad | ChunkBatcher) -> None:
        super().__init__(ctx, scenario, speaker="trainee")
        self.providers = providers
        on_frame = self.recorder.on_output_frame if self.recorder else None
        self.output = output_track(ctx.settings.media, on_frame=on_frame)
        self.agent = CustomerAgent(session_id=ctx.session_id, scenario=scenario, providers=providers,
                                   output=self.output, events=self.tap, settings=ctx.settings.coach, vad=vad)

    def _on_pcm(self, pcm: np.ndarray, t_ns: int) -> None:
        self.agent.feed(pcm, t_ns)
        if self.recorder is not None:
            self.recorder.add_left(pcm, t_ns)

    async def start(self) -> None:
        # The trainee's audio only feeds the coach and the recording, both at 16 kHz.
        decode_received_audio_at(self.ctx.pc, COACH_SAMPLE_RATE)
        add_output_track(self.ctx.pc, self.output)  # reuses the offer's audio transceiver (sendrecv)
        await self.agent.start()
        self.start_common(self._on_pcm)

    async def stop_work(self) -> None:
        await self.agent.close()
        self.output.stop()
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
    Owns what outlives a session: the muxing of shadow recordings (``close()`` at shutdown).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self._vad: SileroVad | None = None
        self._batcher: VadBatcher | None = None  # one per app: every session's VAD chunks
        self._sessions: weakref.WeakSet[SessionPipeline] = weakref.WeakSet()
        self.muxer = RecordingMuxer()
        if settings is not None:
            preload_providers(settings.coach.providers)
            self._vad = SileroVad.shared()

    @property
    def live_sessions(self) -> int:
        return sum(1 for session in self._sessions if not session.closed)

    async def close(self) -> None:
        """Shutdown: stop the mux running (its separate files stay) and drop the queued ones."""
        if self._batcher is not None:
            self._batcher.close()
        await self.muxer.close()

    def _session_vad(self, settings: Settings) -> SileroVad | ChunkBatcher:
        if self._vad is None:
            self._vad = SileroVad.shared()
        wait_ms = settings.coach.vad.batch_wait_ms
        if wait_ms <= 0:
            return self._vad
        if self._batcher is None:
            self._batcher = VadBatcher(self._vad, max_wait_ms=wait_ms)
        return self._batcher

    async def attach(self, ctx: MediaContext) -> PracticeSession | StreamAnalysis | None:
        session: PracticeSession | StreamAnalysis
        if ctx.role == "trainee":
            scenario = load_session_scenario(ctx.settings, ctx.scenario)
            providers = build_providers(ctx.settings.coach.providers, scenario)
            session = PracticeSession(ctx, scenario, providers, self._session_vad(ctx.settings))
        elif ctx.role == "streamer":
            shown = load_session_scenario(ctx.settings, ctx.scenario) if ctx.scenario else None
            try:
                providers = build_providers(ctx.settings.coach.providers, shown)
            except Exception:  # noqa: BLE001 - analysis without transcripts is still useful
                log.exception("streamer analysis: providers unavailable, VAD only")
                providers = None
            session = StreamAnalysis(ctx, shown, providers, self._session_vad(ctx.settings), self.muxer)
        else:
            return None
        self._sessions.add(session)
        try:
            await session.start()
        except BaseException:
            await session.close()
            raise
        return session
