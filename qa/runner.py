"""`livecoach qa` runner: N concurrent headless aiortc trainees, measured at the client.

Each session joins its own practice room, plays the prompt WAVs turn by turn on a paced track and
watches the energy of the audio it receives (perf_counter_ns at recv()). After all sessions end,
the server's per-turn stage timestamps (GET /api/sessions/{sid}/turns) are joined to each turn.

Cost per simulated trainee: prompts go out as Opus packets encoded once per process
(qa/opus_track.py, ``send="opus"``, the default; ``"pcm"`` encodes every frame as before), and
with ``light`` the reply is judged voiced/silent from the RTP packet sizes (qa/rtp_tap.py)
instead of decoding it, and the pre-encoded packets go out on one 20 ms clock per process,
past aiortc's RTP sender (qa/lean_send.py). Every run reports the process's CPU per session and
its loop lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from media.settings import MediaSettings
from qa.audio import Clip, WavFileTrack
from qa.client import LivecoachClient
from qa.config import QaConfig, load_encoded, load_prompt
from qa.detect import ReceivedAudioMonitor
from qa.lean_send import LeanOpusTrack, attach_lean_sender
from qa.measure import SpeechSpan, detect_speech_span, ms_between, summarize_run
from qa.opus_track import OpusFileTrack
from qa.results import SessionResult, TurnResult, join_server_turns
from qa.rtp_tap import RtpVoiceTap
from qa.server_api import CpuMeter, LoopLag, Progress, collect_server_turns, get_token, measure_clock

# A barge-in stop counts once the reply stays quiet this long (and while we still talk): longer
# than a pause between the reply's sentences, shorter than any answer to the talk-over.
BARGEIN_STAYS_QUIET_MS = 500


def _is_loopback(url: str) -> bool:
    """Same-machine server: gather only 127.0.0.1 candidates (aioice skips loopback otherwise)."""
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


# ---- one session ---------------------------------------------------------------------------------


class SessionProbe:
    """One trainee: join, play the prompts, record what it hears."""

    def __init__(self, cfg: QaConfig, index: int, run_id: str, progress: Progress) -> None:
        self.cfg = cfg
        self.index = index
        self.progress = progress
        room = f"{cfg.room_prefix}qa-{run_id}-{index}"
        self.result = SessionResult(session=index, room=room, user=f"qa-{run_id}-{index}")
        self.monitor = ReceivedAudioMonitor()
        self.client: LivecoachClient | None = None
        self.track: WavFileTrack | OpusFileTrack | None = None
        self.tap = RtpVoiceTap(self.monitor) if cfg.light else None
        self._reader: asyncio.Task[None] | None = None
        self.phase = "starting"  # for error messages: what we were waiting for
        self.connected = asyncio.Event()

    async def run(self, http: aiohttp.ClientSession, connect_gate: asyncio.Semaphore) -> SessionResult:
        try:
            self.phase = "connecting"
            async with connect_gate:
                await self._connect(http)
            self.connected.set()
            self.phase = "waiting for the greeting to end"
            await self._settle_greeting()
            for turn in range(self.cfg.turns):
                self.phase = f"in turn {turn} (previous reply still playing?)"
                prompt = self.cfg.prompts[turn % len(self.cfg.prompts)]
                record = await self._turn(turn, prompt)
                self.result.turns.append(record)
                self._report_turn(record)
            self.phase = "reading stats"
            self.result.packets_lost = await self._packets_lost()
        except asyncio.CancelledError:
            self.result.error = self.result.error or "cancelled (run timeout)"
            raise
        except TimeoutError:
            self.result.error = f"timed out while {self.phase}"
            self.progress(f"session {self.index}: FAILED {self.result.error}")
        except Exception as exc:  # one failed session must not sink the run: record why
            self.result.error = f"{type(exc).__name__}: {exc}"
            self.progress(f"session {self.index}: FAILED {self.result.error}")
        finally:
            await self.close()
        return self.result

    async def _connect(self, http: aiohttp.ClientSession) -> None:
        r = self.result
        r.token = await get_token(http, self.cfg.url, self.cfg.secret, r.room, r.user)
        t_join = time.perf_counter_ns()
        self.client = LivecoachClient(media=MediaSettings(ice_loopback_only=_is_loopback(self.cfg.url)),
                                      name=f"qa{self.index}")
        joined = await self.client.connect(self.cfg.url, r.token, scenario=self.cfg.scenario)
        r.join_ms = ms_between(time.perf_counter_ns(), t_join)
        r.session_id = (joined or {}).get("session_id") or getattr(self.client, "session_id", None)
        self.track = self._new_track()
        await self.client.publish(audio=self.track, prepare=self._prepare)
        r.connect_ms = ms_between(time.perf_counter_ns(), t_join)
        if self.tap is None:  # the light path is fed by the RTP tap: nothing to decode or read
            remote = await self._remote_audio_track()
            self._reader = asyncio.create_task(self._read(remote), name=f"qa-read-{self.index}")
        first = await self.monitor.wait(lambda: self.monitor.first_frame_ns, self.cfg.reply_timeout_s)
        r.first_audio_ms = ms_between(first, t_join)
        self.progress(f"session {self.index}: connected in {r.connect_ms:.0f} ms, first audio after "
                      f"{r.first_audio_ms:.0f} ms (room {r.room})")

    def _new_track(self) -> WavFileTrack | OpusFileTrack:
        if self.cfg.send != "opus":
            return WavFileTrack()
        return LeanOpusTrack() if self.cfg.light else OpusFileTrack()

    def _prepare(self, pc: RTCPeerConnection) -> None:
        """Light mode: tap the received RTP, send on the process's lean clock (before the offer)."""
        if self.tap is not None:
            self.tap.attach_audio(pc)
        if isinstance(self.track, LeanOpusTrack):
            attach_lean_sender(pc, self.track)

    async def _remote_audio_track(self) -> Any:
        """The server's audio track (set by the client's 'track' event during negotiation)."""
        assert self.client is not None
        deadline = time.monotonic() + 5.0
        while self.client.received_audio is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the server sent no audio track")
            await asyncio.sleep(0.02)
        return self.client.received_audio

    async def _read(self, track: Any) -> None:
        """Consume received frames; the arrival time is taken right at recv()."""
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                now = time.perf_counter_ns()
                self.monitor.feed(now, frame.to_ndarray())

    async def _settle_greeting(self) -> None:
        """The customer greets first: let that finish so it is not mistaken for a reply."""
        mon = self.monitor
        try:
            await mon.wait_onset(0, self.cfg.greet_wait_s)
        except TimeoutError:
            return
        self.result.greeting = True
        await mon.wait_quiet(self.cfg.settle_ms, self.cfg.reply_timeout_s)

    async def _play(self, path: str) -> Clip:
        """Queue a prompt on our track (it starts within one frame)."""
        span = detect_speech_span(path)
        if isinstance(self.track, OpusFileTrack):
            sound = await load_encoded(path)
            return self.track.play_sound(sound, span.onset_s, span.offset_s)
        assert self.track is not None
        pcm = await load_prompt(path)
        return self.track.play_clip(pcm, span.onset_s, span.offset_s)

    async def _mark(self, clip: Clip, name: str, timeout_s: float) -> int:
        """Wait until the clip's ``name`` sample (onset_ns/offset_ns) has left our track."""
        return await self.monitor.wait(lambda: getattr(clip, name), timeout_s)

    async def _turn(self, turn: int, prompt: str) -> TurnResult:
        cfg, mon = self.cfg, self.monitor
        span: SpeechSpan = detect_speech_span(prompt)
        rec = TurnResult(session=self.index, turn=turn, prompt=prompt)
        if mon.speaking:  # still hearing the previous reply: wait for it to end
            await mon.wait_quiet(cfg.settle_ms, cfg.reply_timeout_s)
        clip = await self._play(prompt)
        speech_onset = await self._mark(clip, "onset_ns", span.duration_s + 5)
        speech_end = await self._mark(clip, "offset_ns", span.duration_s + 5)
        rec.speech_end_ns = speech_end
        try:
            heard = await mon.wait_onset(speech_end, cfg.reply_timeout_s + span.duration_s)
        except TimeoutError:
            rec.error = f"no reply audio within {cfg.reply_timeout_s:.0f} s of speech end"
            return rec
        rec.early_reply = any(speech_onset <= s.onset_ns < speech_end for s in mon.segments)
        rec.heard_ns = heard
        rec.latency_ms = ms_between(heard, speech_end)
        if cfg.barge_in:
            await self._barge_in(rec, heard)
        try:
            quiet_from = await mon.wait_quiet(cfg.settle_ms, cfg.reply_timeout_s * 2)
        except TimeoutError:
            quiet_from = time.perf_counter_ns()
            rec.error = rec.error or "reply never went quiet"
        rec.reply_end_ns = quiet_from
        # Holes/gaps only inside replies: a barge-in turn has two (cut reply, answer to the talk-over).
        windows = [(heard, quiet_from)]
        if rec.bargein_stop_ns is not None:
            windows = [(heard, rec.bargein_stop_ns)]
            if rec.bargein_reply_ms is not None and rec.bargein_speech_end_ns is not None:
                windows.append((rec.bargein_speech_end_ns + int(rec.bargein_reply_ms * 1e6), quiet_from))
        for a, b in windows:
            rec.add_window(mon.window_stats(a, b))
        return rec

    async def _barge_in(self, rec: TurnResult, heard: int) -> None:
        cfg, mon = self.cfg, self.monitor
        assert cfg.barge_in is not None
        span = detect_speech_span(cfg.barge_in)
        # Start the file so its speech onset lands barge_in_after_s after the reply started.
        lead = int(span.onset_s * 1e9)
        wait = (heard + int(cfg.barge_in_after_s * 1e9) - lead - time.perf_counter_ns()) / 1e9
        if wait > 0:
            await asyncio.sleep(wait)
        if not mon.speaking:
            rec.bargein_error = "reply ended before the barge-in"
            return
        clip = await self._play(cfg.barge_in)
        onset = await self._mark(clip, "onset_ns", span.duration_s + 5)
        rec.bargein_onset_ns = onset
        try:
            stop, end = await self._reply_stopped(clip, onset, span.duration_s + 5)
        except TimeoutError:
            rec.bargein_error = "reply kept playing over the barge-in"
            return
        rec.bargein_stop_ns = stop
        rec.bargein_ms = ms_between(stop, onset)
        # The talk-over is a user turn of its own: wait for the customer's answer to it, so the
        # next turn starts from a quiet line (and its record lands in the server's log).
        rec.bargein_speech_end_ns = end
        try:
            again = await mon.wait_onset(end, cfg.reply_timeout_s)
            rec.bargein_reply_ms = ms_between(again, end)
        except TimeoutError:
            rec.bargein_reply_ms = None

    async def _reply_stopped(self, clip: Clip, onset: int, clip_timeout_s: float) -> tuple[int, int]:
        """When the reply went quiet for good after our talk-over onset, and when our talk-over ended.

        A pause between the reply's sentences is an offset too; the stop is the first offset the
        reply does not resume from while we are still talking (nor within BARGEIN_STAYS_QUIET_MS),
        so a cut that lands in such a pause is timed from the pause, as a listener hears it.
        """
        mon, after = self.monitor, onset
        end: int | None = None
        while True:
            stop = await mon.wait_offset(after, self.cfg.reply_timeout_s)
            if end is None:
                end = await self._mark(clip, "offset_ns", clip_timeout_s)
            horizon = max(end, stop + BARGEIN_STAYS_QUIET_MS * 1_000_000)
            resumed = await self._onset_before(stop, horizon)
            if resumed is None:
                return stop, end
            after = resumed

    async def _onset_before(self, after_ns: int, horizon_ns: int) -> int | None:
        """The first onset in [after_ns, horizon_ns), waiting until audio past the horizon arrived."""
        mon = self.monitor

        def settled() -> int | None:
            first = mon.onset_after(after_ns)
            if first is not None and first < horizon_ns:
                return first
            return -1 if mon.arrivals and mon.arrivals[-1] >= horizon_ns else None

        found = await mon.wait(settled, self.cfg.reply_timeout_s)
        return None if found == -1 else found

    def _report_turn(self, rec: TurnResult) -> None:
        if rec.error:
            self.progress(f"session {self.index} turn {rec.turn}: ERROR {rec.error}")
            return
        extra = f", barge-in stop {rec.bargein_ms:.0f} ms" if rec.bargein_ms is not None else ""
        self.progress(f"session {self.index} turn {rec.turn}: heard reply {rec.latency_ms or 0:.0f} ms "
                      f"after speech end{extra}")

    async def _packets_lost(self) -> int | None:
        if self.tap is not None:
            return self.tap.lost
        pc = getattr(self.client, "pc", None)
        if pc is None:
            return None
        try:
            report = await asyncio.wait_for(pc.getStats(), 2.0)
        except Exception:  # stats are best effort; the session result stands without them
            return None
        lost = [int(getattr(s, "packetsLost", 0) or 0) for s in report.values()
                if getattr(s, "type", "") == "inbound-rtp"]
        return sum(lost) if lost else 0

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.close(), 5.0)
        if self.track is not None:
            self.result.send_lag_max_ms = round(self.track.max_lag_ms, 1)
            self.track.stop()


# ---- a whole run -----------------------------------------------------------------------------------


async def run_qa(cfg: QaConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run one concurrency level in this process; returns the run dict (turns, sessions, summary)."""
    cfg.validate()
    say = progress or (lambda _msg: None)
    run_id = cfg.run_id or uuid.uuid4().hex[:8]
    started = time.time()
    t0 = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        clock = await measure_clock(http, cfg.url)
        probes = [SessionProbe(cfg, i, run_id, say) for i in cfg.my_indices()]
        gate = asyncio.Semaphore(cfg.max_connecting)
        stagger = cfg.ramp_s / cfg.sessions if cfg.sessions else 0.0
        cpu = CpuMeter(len(probes))

        async def staggered(p: SessionProbe) -> SessionResult:
            await asyncio.sleep(p.index * stagger)
            try:
                return await p.run(http, gate)
            finally:
                cpu.mark_steady_end()  # the steady window ends when the first session does

        async def all_connected() -> None:
            await asyncio.gather(*(p.connected.wait() for p in probes))
            cpu.mark_steady_start()

        budget = cfg.run_timeout_s or (cfg.ramp_s + 30 + cfg.turns * (cfg.reply_timeout_s * 3 + 10))
        say(f"run {run_id}: {len(probes)} session(s) x {cfg.turns} turn(s), ramp {cfg.ramp_s:g} s, "
            f"send {cfg.send}, receive {'rtp' if cfg.light else 'decode'}, "
            f"clock {'shared' if clock.same_clock else 'offset %.1f ms' % (clock.offset_ns / 1e6)}")
        lag = LoopLag()
        lag.start()
        cpu.start()
        tasks = [asyncio.create_task(staggered(p), name=f"qa-session-{p.index}") for p in probes]
        steady = asyncio.create_task(all_connected(), name="qa-steady")
        try:
            done, pending = await asyncio.wait(tasks, timeout=budget)
        finally:
            for t in [*tasks, steady]:
                t.cancel()
            await asyncio.gather(*tasks, steady, return_exceptions=True)
            client_health = {**await lag.stop(), **cpu.stop()}
        results = [p.result for p in probes]
        server_turns = await collect_server_turns(http, cfg.url, results, say)
    join_server_turns(results, server_turns, clock)
    turns = [t.as_dict() for r in results for t in r.turns]
    sessions = [r.as_dict() for r in results]
    return {
        "run_id": run_id,
        "concurrency": len(probes),
        "turns_per_session": cfg.turns,
        "started_at": started,
        "duration_s": round(time.perf_counter() - t0, 2),
        "config": {"url": cfg.url, "scenario": cfg.scenario, "prompts": cfg.prompts, "barge_in": cfg.barge_in,
                   "ramp_s": cfg.ramp_s, "send": cfg.send, "receive": "rtp" if cfg.light else "decode"},
        "clock": clock.as_dict(),
        "client_health": {**client_health, "procs": 1, "send_lag_max_ms": max(
            (r.send_lag_max_ms or 0.0 for r in results), default=None)},
        "session_results": sessions,
        "turns": turns,
        "summary": summarize_run(turns, sessions),
    }
