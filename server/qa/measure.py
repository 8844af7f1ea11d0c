"""Client-side measurement for QA: prompt speech spans, received-audio energy tracking, stats.

Everything here is pure computation (numpy + stdlib) so it can be unit-tested without a server.
Times are ``time.perf_counter_ns()`` values (CLOCK_MONOTONIC: shared with a server process on the
same machine, which lets us join client timings with the server's stage timestamps).
"""

from __future__ import annotations

import asyncio
import functools
import math
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

FRAME_GAP_NS = 60_000_000  # inter-frame arrival gap counted as an underrun (3 frames of 20 ms)
DEFAULT_ON_DBFS = -45.0  # received frame louder than this = reply audio (paced track sends zeros)
DEFAULT_HOLD_MS = 250.0  # silence this long ends a voiced segment (offset = start of the silence)
HOLE_MIN_MS = 60.0  # silence runs inside a reply at least this long count as holes


# ---- prompt files ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechSpan:
    """Where the speech is inside a prompt WAV (seconds from the file start)."""

    onset_s: float
    offset_s: float
    duration_s: float


def load_wav_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as mono int16. Raises ValueError with a clear reason."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
            rate, channels = w.getframerate(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a readable WAV file ({exc})") from exc
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from exc
    pcm = np.frombuffer(raw, dtype=np.int16)
    if channels > 1:
        pcm = pcm[: len(pcm) // channels * channels].reshape(-1, channels).mean(axis=1).astype(np.int16)
    return pcm, rate


def frame_dbfs(pcm: np.ndarray) -> float:
    """RMS level of int16 samples in dBFS (-120 for digital silence)."""
    if pcm.size == 0:
        return -120.0
    x = pcm.astype(np.float64)
    ms = float(np.mean(x * x)) / (32768.0 * 32768.0)
    return 10.0 * math.log10(ms) if ms > 1e-12 else -120.0


@functools.lru_cache(maxsize=64)
def detect_speech_span(path: str, threshold_dbfs: float = DEFAULT_ON_DBFS, frame_ms: float = 10.0) -> SpeechSpan:
    """Detect speech onset/offset by energy, once per file.

    Better than "duration − 1.5 s": espeak leaves ~0.3 s of near-silence after the words, which
    would make every turn look 0.3 s faster than it is.
    """
    pcm, rate = load_wav_mono(path)
    hop = max(1, int(rate * frame_ms / 1000))
    n = len(pcm) // hop
    if n == 0:
        raise ValueError(f"{path}: empty audio")
    frames = pcm[: n * hop].astype(np.float64).reshape(n, hop)
    db = 10.0 * np.log10(np.mean(frames * frames, axis=1) / (32768.0 * 32768.0) + 1e-12)
    voiced = np.flatnonzero(db > threshold_dbfs)
    if voiced.size == 0:
        raise ValueError(f"{path}: no speech above {threshold_dbfs} dBFS")
    return SpeechSpan(
        onset_s=voiced[0] * hop / rate,
        offset_s=(voiced[-1] + 1) * hop / rate,
        duration_s=len(pcm) / rate,
    )


# ---- received audio --------------------------------------------------------------------------


@dataclass(slots=True)
class Segment:
    onset_ns: int
    offset_ns: int | None = None  # arrival of the first frame of the silence that ended it


class ReceivedAudioMonitor:
    """Energy tracker for the audio a client receives, fed one decoded frame at a time.

    Keeps a compact frame log (arrival time, voiced) so per-turn analysis (holes, gaps) is a pure
    function over a time window, and lets coroutines wait for onsets/offsets/quiet.
    """

    def __init__(self, on_dbfs: float = DEFAULT_ON_DBFS, hold_ms: float = DEFAULT_HOLD_MS) -> None:
        self.on_dbfs = on_dbfs
        self.hold_ns = int(hold_ms * 1e6)
        self.arrivals: list[int] = []
        self.voiced: list[bool] = []
        self.segments: list[Segment] = []
        self.first_frame_ns: int | None = None
        self._silence_since: int | None = None
        self._changed = asyncio.Event() if _has_loop() else None

    # feeding ------------------------------------------------------------------------------
    def feed(self, arrival_ns: int, pcm: np.ndarray) -> None:
        self.feed_level(arrival_ns, frame_dbfs(pcm))

    def feed_level(self, arrival_ns: int, dbfs: float) -> None:
        voiced = dbfs > self.on_dbfs
        if self.first_frame_ns is None:
            self.first_frame_ns = arrival_ns
        self.arrivals.append(arrival_ns)
        self.voiced.append(voiced)
        open_seg = self.segments[-1] if self.segments and self.segments[-1].offset_ns is None else None
        if voiced:
            self._silence_since = None
            if open_seg is None:
                self.segments.append(Segment(onset_ns=arrival_ns))
        else:
            if self._silence_since is None:
                self._silence_since = arrival_ns
            if open_seg is not None and arrival_ns - self._silence_since >= self.hold_ns:
                open_seg.offset_ns = self._silence_since
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    # queries ------------------------------------------------------------------------------
    @property
    def speaking(self) -> bool:
        return bool(self.segments) and self.segments[-1].offset_ns is None

    def onset_after(self, t_ns: int) -> int | None:
        for seg in self.segments:
            if seg.onset_ns >= t_ns:
                return seg.onset_ns
        return None

    def offset_after(self, t_ns: int) -> int | None:
        for seg in self.segments:
            if seg.offset_ns is not None and seg.offset_ns >= t_ns:
                return seg.offset_ns
        return None

    def quiet_since(self) -> int | None:
        """Arrival of the first frame of the current silence (None while voiced / no frames)."""
        if not self.arrivals or self.voiced[-1]:
            return None
        return self._silence_since

    def last_offset(self) -> int | None:
        for seg in reversed(self.segments):
            if seg.offset_ns is not None:
                return seg.offset_ns
        return None

    async def wait(self, predicate: Any, timeout_s: float) -> Any:
        """Wait until ``predicate()`` returns a non-None value; raises asyncio.TimeoutError."""
        async with asyncio.timeout(timeout_s):
            while True:
                value = predicate()
                if value is not None:
                    return value
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()

    async def wait_onset(self, after_ns: int, timeout_s: float) -> int:
        return await self.wait(lambda: self.onset_after(after_ns), timeout_s)

    async def wait_offset(self, after_ns: int, timeout_s: float) -> int:
        return await self.wait(lambda: self.offset_after(after_ns), timeout_s)

    async def wait_quiet(self, quiet_ms: float, timeout_s: float) -> int:
        """Wait for ``quiet_ms`` of received silence; returns when that silence began."""
        need = int(quiet_ms * 1e6)

        def check() -> int | None:
            since = self.quiet_since()
            if since is not None and self.arrivals[-1] - since >= need:
                return since
            return None

        return await self.wait(check, timeout_s)

    # per-window analysis ------------------------------------------------------------------
    def window_stats(self, start_ns: int, end_ns: int) -> dict[str, float | int]:
        return window_stats(self.arrivals, self.voiced, start_ns, end_ns)


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def window_stats(arrivals: list[int], voiced: list[bool], start_ns: int, end_ns: int) -> dict[str, float | int]:
    """Underruns (arrival gaps > 60 ms) and silence holes (>= 60 ms) inside [start, end]."""
    import bisect

    i0 = bisect.bisect_left(arrivals, start_ns)
    i1 = bisect.bisect_right(arrivals, end_ns)
    gaps = 0
    gap_ms = 0.0
    holes = 0
    hole_ms = 0.0
    run_start: int | None = None
    for i in range(i0, i1):
        if i > i0:
            d = arrivals[i] - arrivals[i - 1]
            if d > FRAME_GAP_NS:
                gaps += 1
                gap_ms += d / 1e6
        if not voiced[i]:
            if run_start is None:
                run_start = arrivals[i]
        else:
            if run_start is not None:
                run = (arrivals[i] - run_start) / 1e6
                if run >= HOLE_MIN_MS:
                    holes += 1
                    hole_ms += run
            run_start = None
    return {
        "frames": max(0, i1 - i0),
        "underruns": gaps,
        "underrun_ms": round(gap_ms, 1),
        "holes": holes,
        "hole_ms": round(hole_ms, 1),
    }


# ---- stats -------------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no data."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    if not xs:
        return None
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def summarize(values: Iterable[float | None]) -> dict[str, float | int | None]:
    xs = [float(v) for v in values if v is not None]
    out: dict[str, float | int | None] = {"n": len(xs)}
    for name, q in (("p50", 50), ("p95", 95), ("p99", 99)):
        p = percentile(xs, q)
        out[name] = None if p is None else round(p, 1)
    out["mean"] = round(sum(xs) / len(xs), 1) if xs else None
    out["min"] = round(min(xs), 1) if xs else None
    out["max"] = round(max(xs), 1) if xs else None
    return out


# ---- joining client and server timings --------------------------------------------------------

STAGES = ("uplink", "endpointing", "stt", "llm", "tts", "server_to_frame", "transport")
STAGE_LABELS = {
    "uplink": "uplink + VAD (client speech end → server speech end)",
    "endpointing": "endpointing (speech end → EOT decision)",
    "stt": "STT (EOT → transcript)",
    "llm": "LLM first token",
    "tts": "TTS first audio",
    "server_to_frame": "server → first reply frame",
    "transport": "transport (first frame → client heard)",
}


def _ms(a: int | None, b: int | None) -> float | None:
    if a is None or b is None:
        return None
    return round((a - b) / 1e6, 1)


def stage_breakdown(client_speech_end_ns: int, client_heard_ns: int | None, server: dict[str, Any],
                    clock_offset_ns: int = 0) -> dict[str, float | None]:
    """Where one turn's time went. Server times are shifted by ``-clock_offset_ns`` to client time.

    The stages chain: their sum equals the client-measured latency whenever all are known.
    """

    def srv(name: str) -> int | None:
        v = server.get(name)
        return None if v is None else int(v) - clock_offset_ns

    end = srv("user_speech_end_ns")
    eot = srv("eot_decision_ns")
    stt = srv("stt_final_ns")
    llm = srv("llm_first_token_ns")
    tts = srv("tts_first_audio_ns")
    frame = srv("first_reply_frame_ns")
    return {
        "uplink": _ms(end, client_speech_end_ns),
        "endpointing": _ms(eot, end),
        "stt": _ms(stt, eot),
        "llm": _ms(llm, stt),
        "tts": _ms(tts, llm),
        "server_to_frame": _ms(frame, tts),
        "transport": _ms(client_heard_ns, frame),
    }


def server_stage_sum_ms(server: dict[str, Any]) -> float | None:
    """Server-side time: its speech end → its first reply frame."""
    return _ms(server.get("first_reply_frame_ns"), server.get("user_speech_end_ns"))


def provider_ms(server: dict[str, Any]) -> float:
    """Time the turn spent in providers: STT + LLM to the first speakable clause + TTS first audio."""
    stage_ms = server.get("stage_ms") or {}
    return sum(float(stage_ms.get(k) or 0.0) for k in ("stt", "llm", "tts"))


def server_overhead_ms(server: dict[str, Any]) -> float | None:
    """First reply frame − EOT decision − provider time (stt + llm + tts): our own glue cost."""
    total = _ms(server.get("first_reply_frame_ns"), server.get("eot_decision_ns"))
    if total is None:
        return None
    provider = provider_ms(server)
    if not provider:  # no provider timings: fall back to the timestamp chain
        parts = [_ms(server.get("stt_final_ns"), server.get("eot_decision_ns")),
                 _ms(server.get("llm_first_token_ns"), server.get("stt_final_ns")),
                 _ms(server.get("tts_first_audio_ns"), server.get("llm_first_token_ns"))]
        if any(p is None for p in parts):
            return None
        provider = sum(p for p in parts if p is not None)
    return round(total - provider, 1)


def match_server_turn(client_speech_end_ns: int, server_turns: list[dict[str, Any]], used: set[int],
                      clock_offset_ns: int = 0, window_ns: int = 3_000_000_000) -> dict[str, Any] | None:
    """The server turn whose speech end is nearest to the client's (within ``window_ns``)."""
    best: tuple[int, int] | None = None
    for i, t in enumerate(server_turns):
        if i in used or t.get("user_speech_end_ns") is None:
            continue
        d = abs(int(t["user_speech_end_ns"]) - clock_offset_ns - client_speech_end_ns)
        if d <= window_ns and (best is None or d < best[0]):
            best = (d, i)
    if best is None:
        return None
    used.add(best[1])
    return server_turns[best[1]]


@dataclass(slots=True)
class ClockAlignment:
    """Server perf clock minus client perf clock, estimated from GET /api/clock round trips."""

    offset_ns: int = 0
    rtt_ns: int = 0
    same_clock: bool = True
    samples: list[tuple[int, int]] = field(default_factory=list)  # (offset, rtt)

    @classmethod
    def from_samples(cls, samples: list[tuple[int, int]]) -> "ClockAlignment":
        """Pick the sample with the smallest RTT; an offset below RTT means one shared clock."""
        if not samples:
            return cls(same_clock=False)
        offset, rtt = min(samples, key=lambda s: s[1])
        same = abs(offset) <= rtt + 1_000_000
        return cls(offset_ns=0 if same else offset, rtt_ns=rtt, same_clock=same, samples=samples)

    def as_dict(self) -> dict[str, Any]:
        return {"offset_ns": self.offset_ns, "rtt_ms": round(self.rtt_ns / 1e6, 2), "same_clock": self.same_clock}


# ---- SLOs --------------------------------------------------------------------------------------

SLO_METRICS = ("turn", "bargein", "connect", "first_audio", "server_overhead")
SLO_STATS = ("p50", "p95", "p99", "mean", "max")
SLO_COUNTS = ("underruns_max", "failed_turns_max", "packets_lost_max")


def parse_slo(text: str) -> tuple[str, float]:
    """``turn_p95_ms=1500`` → ("turn_p95_ms", 1500.0). Raises ValueError with the allowed keys."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep:
        raise ValueError(f"--slo {text!r}: expected KEY=VALUE, e.g. turn_p95_ms=1500")
    allowed = {f"{m}_{s}_ms" for m in SLO_METRICS for s in SLO_STATS} | set(SLO_COUNTS)
    if key not in allowed:
        raise ValueError(f"--slo {key!r}: unknown key; use <{'|'.join(SLO_METRICS)}>_<{'|'.join(SLO_STATS)}>_ms "
                         f"or one of {', '.join(SLO_COUNTS)}")
    try:
        threshold = float(value)
    except ValueError:
        raise ValueError(f"--slo {text!r}: {value!r} is not a number") from None
    if threshold < 0:
        raise ValueError(f"--slo {text!r}: threshold must be >= 0")
    return key, threshold


def check_slos(summary: dict[str, Any], slos: dict[str, float]) -> list[str]:
    """Violations as readable lines. A metric with no data breaks its SLO (nothing was proven)."""
    out: list[str] = []
    for key, limit in slos.items():
        if key in SLO_COUNTS:
            counter = key.removesuffix("_max")
            value = summary.get(counter)
        else:
            metric, stat, _ = key.rsplit("_", 2)
            value = (summary.get(f"{metric}_ms") or {}).get(stat)
        if value is None:
            out.append(f"{key}: no data (limit {limit:g})")
        elif value > limit:
            out.append(f"{key}: {value:g} > {limit:g}")
    return out


# ---- run summary -------------------------------------------------------------------------------


def summarize_run(turns: list[dict[str, Any]], sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate per-turn and per-session records into the numbers SLOs and reports use."""
    ok = [t for t in turns if not t.get("error")]
    stages: dict[str, Any] = {}
    for stage in STAGES:
        stages[stage] = summarize((t.get("stages_ms") or {}).get(stage) for t in ok)
    return {
        "sessions": len(sessions),
        "failed_sessions": sum(1 for s in sessions if s.get("error")),
        "turns": len(turns),
        "failed_turns": len(turns) - len(ok),
        "turn_ms": summarize(t.get("latency_ms") for t in ok),
        "bargein_ms": summarize(t.get("bargein_ms") for t in turns if t.get("bargein_ms") is not None),
        "connect_ms": summarize(s.get("connect_ms") for s in sessions),
        "first_audio_ms": summarize(s.get("first_audio_ms") for s in sessions),
        "server_sum_ms": summarize(t.get("server_sum_ms") for t in ok),
        "server_overhead_ms": summarize(t.get("server_overhead_ms") for t in ok),
        "stages_ms": stages,
        "underruns": sum(int(t.get("underruns") or 0) for t in turns),
        "holes": sum(int(t.get("holes") or 0) for t in turns),
        "packets_lost": sum(int(s.get("packets_lost") or 0) for s in sessions),
    }
