"""Client-side measurement for QA: prompt speech spans, stage breakdown, stats, SLOs.

Everything here is pure computation (numpy + stdlib) so it can be unit-tested without a server.
Times are ``time.perf_counter_ns()`` values (CLOCK_MONOTONIC: shared with a server process on the
same machine, which lets us join client timings with the server's stage timestamps).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from coach.turn_stages import END_FIELD, STAGE_NAMES, START_FIELD, stage_ms
from coach.turn_stages import STAGES as SERVER_STAGES
from qa.audio import OUT_RATE, load_wav
from qa.detect import DEFAULT_ON_DBFS

# ---- prompt files ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechSpan:
    """Where the speech is inside a prompt WAV (seconds from the file start)."""

    onset_s: float
    offset_s: float
    duration_s: float


@functools.lru_cache(maxsize=64)
def detect_speech_span(path: str, threshold_dbfs: float = DEFAULT_ON_DBFS, frame_ms: float = 10.0) -> SpeechSpan:
    """Detect speech onset/offset by energy, once per file.

    Better than "duration − 1.5 s": espeak leaves ~0.3 s of near-silence after the words, which
    would make every turn look 0.3 s faster than it is.
    """
    pcm, rate = load_wav(path), OUT_RATE
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

# The server's stages are coach/turn_stages.py's (the same numbers as /turns and /metrics); the
# client adds the network legs on either side.
STAGES = ("uplink", *STAGE_NAMES, "transport")
STAGE_LABELS = {
    "uplink": "uplink + VAD (client speech end → server speech end)",
    **{s.name: s.label_en for s in SERVER_STAGES},
    "transport": "transport (first frame → client heard)",
}


def ms_between(a: int | None, b: int | None) -> float | None:
    """``a - b`` in ms, 0.1 ms precision; None if either is unknown."""
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

    return {
        "uplink": ms_between(srv(START_FIELD), client_speech_end_ns),
        **stage_ms(server),
        "transport": ms_between(client_heard_ns, srv(END_FIELD)),
    }


def server_stage_sum_ms(server: dict[str, Any]) -> float | None:
    """Server-side time: its speech end → its first reply frame."""
    return ms_between(server.get("first_reply_frame_ns"), server.get("user_speech_end_ns"))


def provider_ms(server: dict[str, Any]) -> float:
    """Time the turn waited on providers after its end-of-turn decision: the STT the speculation
    did not hide (all of it without speculation) + LLM to the first speakable clause + TTS first audio."""
    provider_stage_ms = server.get("stage_ms") or {}
    stt = ms_between(server.get("stt_final_ns"), server.get("eot_decision_ns"))
    if stt is None:
        stt = float(provider_stage_ms.get("stt") or 0.0)
    return stt + sum(float(provider_stage_ms.get(k) or 0.0) for k in ("llm", "tts"))


def server_overhead_ms(server: dict[str, Any]) -> float | None:
    """First reply frame − EOT decision − provider time (stt + llm + tts): our own glue cost."""
    total = ms_between(server.get("first_reply_frame_ns"), server.get("eot_decision_ns"))
    if total is None:
        return None
    provider = provider_ms(server)
    if not provider:  # no provider timings: fall back to the timestamp chain
        parts = [ms_between(server.get("stt_final_ns"), server.get("eot_decision_ns")),
                 ms_between(server.get("llm_first_token_ns"), server.get("stt_final_ns")),
                 ms_between(server.get("tts_first_audio_ns"), server.get("llm_first_token_ns"))]
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
