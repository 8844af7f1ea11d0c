"""Live coaching of a shadowed streamer (no AI customer): what the mentor sees about the stream.

The server hands this class the streamer's 16 kHz PCM, each decoded video frame and, about once a
second, the video receiver's RTP counters; it calls ``tick`` every 250 ms. Out come session events
through ``emit``: ``vad`` edges, ``transcript`` lines (STT per utterance), ``viewer_question`` when a
question of the script's list comes due, ``alert`` (kind + parameters: the page words them), and
every second a ``metrics`` snapshot and a ``stream_health`` sample for the mentor's panel.

Speech rate, pauses, dead air, script keywords and answers to viewer questions are measured by
coach/alerts.py live and coach/analytics.py afterwards, on the same events.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from coach.alerts import LiveAlerts
from coach.analytics_text import scenario_field
from coach.contracts import ProviderError, STTProvider
from coach.settings import AlertSettings, VadSettings
from coach.stream_health import HealthThresholds, StreamHealth
from coach.tasks import TaskOwner
from coach.vad import ChunkBatcher, SileroVad, SpeechEnd, SpeechStart, VadEvent, VadSegmenter

log = logging.getLogger(__name__)

NS = 1_000_000_000
SAMPLE_RATE = 16_000
SNAPSHOT_EVERY_TICKS = 4  # one metrics / stream-health sample per second at 250 ms ticks
MAX_QUEUED_UTTERANCES = 4  # a busy STT drops the oldest waiting utterance rather than queue without bound
# Whisper caps a transcript's tokens (WhisperSettings.max_new_tokens): a streamer's long run of
# speech is transcribed in pieces of at most this length, cut at the quietest moment.
STT_PIECE_S = 8.0
STT_CUT_SEARCH_S = 2.0


@dataclass(frozen=True, slots=True)
class ViewerQuestion:
    text: str
    at_s: float  # when it is asked, in seconds from the session start


def split_for_stt(audio: np.ndarray, rate: int = SAMPLE_RATE, max_s: float = STT_PIECE_S,
                  search_s: float = STT_CUT_SEARCH_S) -> list[np.ndarray]:
    """Pieces of at most ``max_s``; each cut at the quietest 20 ms within the last ``search_s``
    of its piece (between words, not inside one). The pieces concatenate back to ``audio``."""
    pieces, start, frame = [], 0, int(0.02 * rate)
    max_n, search_n = int(max_s * rate), int(min(search_s, max_s / 2) * rate)
    while len(audio) - start > max_n:
        lo, hi = start + max_n - search_n, start + max_n
        window = audio[lo:hi].astype(np.float32)
        frames = len(window) // frame
        energy = (window[: frames * frame].reshape(frames, frame) ** 2).mean(axis=1)
        cut = lo + int(np.argmin(energy)) * frame + frame // 2
        pieces.append(audio[start:cut])
        start = cut
    pieces.append(audio[start:])
    return pieces


def viewer_questions(scenario: Any) -> list[ViewerQuestion]:
    """The script's viewer-question list (``viewer_questions: [{text, at_s}]``), time-ordered."""
    raw = scenario_field(scenario, "viewer_questions", []) or []
    out = []
    for q in raw:
        text, at_s = scenario_field(q, "text"), scenario_field(q, "at_s", 0.0)
        if text:
            out.append(ViewerQuestion(str(text), float(at_s)))
    return sorted(out, key=lambda q: q.at_s)


class StreamerAnalysis:
    """One shadowed stream's live analysis. ``emit`` must accept any session event dict."""

    def __init__(
        self,
        *,
        emit: Callable[[dict[str, Any]], None],
        scenario: Any,
        language: str,
        alert_settings: AlertSettings,
        vad_settings: VadSettings,
        vad: SileroVad | ChunkBatcher | None = None,
        stt: STTProvider | None = None,
        health: HealthThresholds | None = None,
        name: str = "stream",
    ) -> None:
        self.language = "zh" if language.startswith("zh") else "en"
        self.name = name
        self._emit = emit
        self.alerts = LiveAlerts(alert_settings, scenario, self._emit_alert, speaker="streamer", language=self.language)
        self.health = StreamHealth(health or HealthThresholds(), emit=self._emit_alert)
        self.segmenter = VadSegmenter(vad_settings, vad=vad, on_event=self._on_vad)
        self.stt = stt
        self._questions = viewer_questions(scenario)
        self._start_ns: int | None = None
        self._ticks = 0
        self._stt_queue: deque[SpeechEnd] = deque()
        self._stt_worker: asyncio.Task[None] | None = None
        self._tasks = TaskOwner(f"streamer:{name}")

    # ---- events out --------------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        """Emit a session event and let the live alerts see it."""
        self._emit(event)
        self.alerts.on_event(event)

    def _emit_alert(self, alert: dict[str, Any]) -> None:
        self._emit(alert)  # alerts are not fed back into the alert state

    # ---- inputs ------------------------------------------------------------------------------

    def start(self, t_ns: int) -> None:
        self._start_ns = t_ns
        self.alerts.on_event({"type": "session_started", "t_ns": t_ns})

    def feed_pcm(self, pcm: np.ndarray, t_ns: int) -> None:
        self.segmenter.push(pcm, t_ns)  # events come back through _on_vad

    def _on_vad(self, ev: VadEvent) -> None:
        if isinstance(ev, SpeechStart):
            self.emit({"type": "vad", "speaker": "streamer", "edge": "start",
                       "speech_start_ns": ev.onset_ns, "t_ns": ev.confirmed_ns})
        elif isinstance(ev, SpeechEnd):
            self.emit({"type": "vad", "speaker": "streamer", "edge": "end", "speech_start_ns": ev.onset_ns,
                       "speech_end_ns": ev.end_ns, "t_ns": ev.decided_ns})
            self._transcribe(ev)

    def on_video_frame(self, t_ns: int, width: int, height: int) -> None:
        self.health.on_frame(t_ns, width, height)

    def on_rtp_counters(self, t_ns: int, counters: dict[str, Any]) -> None:
        self.health.on_rtp(t_ns, **counters)

    # ---- transcripts -------------------------------------------------------------------------

    def _transcribe(self, ev: SpeechEnd) -> None:
        """Queue the utterance for the one STT worker (in order: the transcript reads as said)."""
        if self.stt is None:
            return
        if len(self._stt_queue) >= MAX_QUEUED_UTTERANCES:
            self._stt_queue.popleft()
            log.warning("%s: STT behind, an utterance is not transcribed", self.name)
        self._stt_queue.append(ev)
        if self._stt_worker is None or self._stt_worker.done():
            self._stt_worker = self._tasks.spawn(self._stt_loop(), name=f"stt:{self.name}")

    async def _stt_loop(self) -> None:
        assert self.stt is not None
        while self._stt_queue:
            ev = self._stt_queue.popleft()
            texts = []
            try:
                for piece in split_for_stt(ev.audio):
                    texts.append((await self.stt.transcribe(piece, SAMPLE_RATE, self.language)).strip())
            except ProviderError as exc:
                self.emit({"type": "error", "stage": "stt", "reason": str(exc)})
                continue
            text = ("" if self.language == "zh" else " ").join(t for t in texts if t)
            if text:
                self.emit({"type": "transcript", "speaker": "streamer", "text": text, "final": True,
                           "start_ns": ev.onset_ns, "end_ns": ev.end_ns})

    # ---- clock -------------------------------------------------------------------------------

    def tick(self, now_ns: int) -> None:
        """Due viewer questions, alert decisions, and the once-a-second snapshots."""
        if self._start_ns is None:
            self.start(now_ns)
        assert self._start_ns is not None
        while self._questions and self._start_ns + int(self._questions[0].at_s * NS) <= now_ns:
            q = self._questions.pop(0)
            asked = self._start_ns + int(q.at_s * NS)
            # A viewer's chat question: a "transcript" line of the viewer, so the live alerts
            # and the report measure the streamer's answer like a customer's question.
            self.emit({"type": "transcript", "speaker": "viewer", "text": q.text, "final": True,
                       "start_ns": asked, "end_ns": asked, "t_ns": now_ns})
        self.alerts.tick(now_ns)
        self.health.tick(now_ns)
        self._ticks += 1
        if self._ticks % SNAPSHOT_EVERY_TICKS == 0:
            self._emit(self.alerts.snapshot(now_ns))
            self._emit(self.health.sample(now_ns))

    async def close(self) -> None:
        self.segmenter.close()
        self._stt_queue.clear()
        await self._tasks.close()
