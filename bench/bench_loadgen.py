"""What the `livecoach qa` load generator costs per simulated trainee.

    python bench/bench_loadgen.py [--sessions 10] [--turns 3] [--mode light|opus|pcm] [--procs 1]

Starts the fake OpenAI provider with instant replies (bench_latency's --instant: no provider
delay, ~5 s TTS tone) and one `livecoach serve`, then runs `livecoach qa` with N sessions in one
of three modes:

- light: prompts pre-encoded once (Opus packets replayed), replies judged by RTP packet size;
- opus:  prompts pre-encoded, replies decoded (energy per 20 ms frame);
- pcm:   the old path: every 20 ms frame Opus-encoded by aiortc, replies decoded.

Prints one JSON document: the generator's CPU per session as % of a core (its own
process_time over the run and over the steady window when every session is connected), the
CPU of the whole qa command (getrusage: start-up and imports included), its loop lag, the
server's CPU, and the turn latency it measured. Runs about 40 s at the defaults.

Unpinned by default. ``--pin`` puts the server on CPU 0 and the generator on CPU 1: on a machine
shared with other work that measures the scheduler more than the generator: the light
generator's one busy thread, pinned to a CPU with CPU hogs, waited 4 s of 15 s in the run queue
(/proc/<pid>/task/<tid>/schedstat; loop lag p99 10-230 ms) where unpinned it had p99 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import FIXTURES, LIVECOACH, ROOT, cpu_s, pin, start_fake, start_workers  # noqa: E402

from qa.procs import stop_processes, stop_stdin_child  # noqa: E402

# STT s, LLM first token s, TTS s, TTS ms per char (≈5 s replies; on a loaded machine the fake's
# TTS streams slower than real time and a greeting can last past 10 s: hence --reply-timeout 20)
INSTANT = ("0", "0", "0", "80")
MODES = {"light": ["--send", "opus", "--light"], "opus": ["--send", "opus", "--decode"],
         "pcm": ["--send", "pcm", "--decode"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--turns", type=int, default=2)
    ap.add_argument("--mode", choices=sorted(MODES), default="light")
    ap.add_argument("--procs", type=int, default=1, help="client processes (--procs of livecoach qa)")
    ap.add_argument("--pin", action="store_true", help="server on CPU 0, generator on CPU 1")
    args = ap.parse_args()
    ncpu = len(os.sched_getaffinity(0))
    pinned = args.pin and ncpu > 1
    data_dir = tempfile.mkdtemp(prefix="livecoach-loadgen-")
    fake, fake_url = start_fake(INSTANT, {0} if pinned else None)
    workers: list[tuple[subprocess.Popen, str]] = []
    result: dict = {}
    try:
        workers = start_workers(1, fake_url, data_dir, None, pin_cores=pinned)
        (proc_w, url), = workers
        out = os.path.join(data_dir, "qa.json")
        argv = [*LIVECOACH, "qa", "--url", url, "--sessions", str(args.sessions), "--turns", str(args.turns),
                "--prompt", str(FIXTURES / "en_question.wav"), "--scenario", "skincare-sensitive-en",
                "--ramp", str(min(5.0, 0.2 * args.sessions)), "--reply-timeout", "20", "--json", out, "--quiet",
                "--procs", str(args.procs), *MODES[args.mode]]
        if pinned:
            argv += ["--pin", "1"]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        srv0, t0 = cpu_s(proc_w.pid), time.monotonic()
        qa = subprocess.run(argv, cwd=ROOT, preexec_fn=pin({1} if pinned else None), stdout=subprocess.DEVNULL,
                            stderr=open(out + ".log", "w"), timeout=300)
        wall = time.monotonic() - t0
        srv = cpu_s(proc_w.pid) - srv0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        qa_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        try:
            run = json.loads(Path(out).read_text())["runs"][0]
        except (OSError, ValueError, KeyError, IndexError):
            sys.stderr.write(Path(out + ".log").read_text(errors="replace")[-2000:] + "\n")
            raise RuntimeError(f"livecoach qa wrote no result (rc={qa.returncode})") from None
        h, s = run["client_health"], run["summary"]
        result = {
            "bench": "loadgen", "mode": args.mode, "sessions": args.sessions, "turns_per_session": args.turns,
            "procs": args.procs, "pinned": pinned, "cpus": ncpu, "wall_s": round(wall, 1),
            "generator_cpu_pct_per_session": h.get("cpu_pct_per_session"),
            "generator_steady_cpu_pct_per_session": h.get("steady_cpu_pct_per_session"),
            "generator_steady_s": max((x.get("steady_s") or 0 for x in h.get("per_process", [h])), default=None),
            "generator_cpu_pct": h.get("cpu_pct"),
            "qa_command_cpu_pct_per_session": round(100 * qa_cpu / wall / args.sessions, 3),
            "sessions_per_core_at_steady": (round(100 / h["steady_cpu_pct_per_session"], 1)
                                            if h.get("steady_cpu_pct_per_session") else None),
            "loop_lag_p99_ms": h.get("loop_lag_p99_ms"), "loop_lag_max_ms": h.get("loop_lag_max_ms"),
            "send_lag_max_ms": h.get("send_lag_max_ms"),
            "server_cpu_pct_per_session": round(100 * srv / wall / args.sessions, 2),
            "turns_ok": s["turns"] - s["failed_turns"], "turns": s["turns"], "failed_sessions": s["failed_sessions"],
            "turn_p50_ms": s["turn_ms"]["p50"], "turn_p95_ms": s["turn_ms"]["p95"],
            "underruns": s["underruns"], "holes": s["holes"], "packets_lost": s["packets_lost"],
            "note": "2-core machine shared with other work: numbers measured under shared load",
        }
    finally:
        stop_processes([proc for proc, _ in workers])
        stop_stdin_child(fake)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
