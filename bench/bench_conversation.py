"""A long conversation: does a session's per-turn cost grow with its length? (prints JSON)

    python bench/bench_conversation.py [--minutes 10] [--instant]

One `livecoach serve` (AI-customer hooks) and one FakeOpenAI (fixed delays STT 100 ms, LLM first
token 150 ms, TTS 50 ms, as bench_latency; ``--instant``: zero) and one `livecoach qa` trainee
talking for ``--minutes`` (the en question, then the reply, then the next turn: about one turn
every 7-8 s). For every turn: the server's own overhead (first reply frame − end-of-turn
decision − provider time), its LLM-first-token stage (the request the openai client prepares
grows with the context when the context is not bounded) and the client-heard latency.
Reports the first and last 10 turns' medians and the least-squares slope per turn.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_latency import FIXTURES, LIVECOACH, start_fake, start_workers  # noqa: E402
from qa.procs import stop_processes, stop_stdin_child  # noqa: E402

TURN_PERIOD_S = 7.5  # measured: prompt (2.5 s + 1.5 s tail) + reply + settle


def slope(values: list[float]) -> float | None:
    """Least-squares slope per turn (ms per turn)."""
    n = len(values)
    if n < 2:
        return None
    mx, my = (n - 1) / 2, statistics.fmean(values)
    den = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (v - my) for i, v in enumerate(values)) / den


def head_tail(values: list[float], k: int = 10) -> dict[str, float | None]:
    return {"first10_median": round(statistics.median(values[:k]), 1) if values else None,
            "last10_median": round(statistics.median(values[-k:]), 1) if values else None,
            "slope_ms_per_turn": None if (s := slope(values)) is None else round(s, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--instant", action="store_true", help="zero-delay fake providers")
    args = ap.parse_args()
    turns = max(2, int(args.minutes * 60 / TURN_PERIOD_S))
    delays = (0.0, 0.0, 0.0) if args.instant else (0.1, 0.15, 0.05)
    data_dir = tempfile.mkdtemp(prefix="livecoach-conversation-")
    fake, fake_url = start_fake([*map(str, delays), "30"])
    workers: list[tuple[subprocess.Popen, str]] = []
    t0 = time.monotonic()
    try:
        workers = start_workers(1, fake_url, data_dir, None, pin_cores=False)
        out = Path(data_dir) / "conversation.json"
        argv = [*LIVECOACH, "qa", "--url", workers[0][1], "--sessions", "1", "--turns", str(turns),
                "--prompt", str(FIXTURES / "en_question.wav"), "--scenario", "skincare-sensitive-en",
                "--json", str(out), "--quiet", "--reply-timeout", "15"]
        rc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                            timeout=args.minutes * 60 * 3 + 120).returncode
        data = json.loads(out.read_text())
    finally:
        stop_processes([proc for proc, _ in workers], 15)
        stop_stdin_child(fake)
    rows = [t for run in data["runs"] for t in run["turns"]]
    ok = [t for t in rows if not t.get("error") and t.get("server_overhead_ms") is not None]
    overhead = [float(t["server_overhead_ms"]) for t in ok]
    llm = [float(t["stages_ms"]["llm"]) for t in ok if (t.get("stages_ms") or {}).get("llm") is not None]
    heard = [float(t["latency_ms"]) for t in ok if t.get("latency_ms") is not None]
    wall = time.monotonic() - t0
    print(json.dumps({
        "bench": "conversation", "qa_rc": rc, "minutes": round(wall / 60, 1), "turns": len(rows),
        "turns_measured": len(ok), "turn_period_s": round(wall / max(1, len(rows)), 1),
        "provider_delays_ms": dict(zip(("stt", "llm_first_token", "tts"), (d * 1000 for d in delays))),
        "server_overhead_ms": head_tail(overhead), "llm_stage_ms": head_tail(llm),
        "client_heard_ms": head_tail(heard),
    }, indent=1))
    return 0 if rc == 0 and ok else 1


if __name__ == "__main__":
    sys.exit(main())
