"""Latency at load: N = 1, 10, 20, 40 concurrent practice sessions, measured at the client.

    python bench/bench_latency.py [--levels 1,10,20,40] [--turns 2] [--workers 1] [--client-procs 0]

Processes (all loopback): one FakeOpenAI (fixed delays: STT 100 ms, LLM first token 150 ms,
TTS 50 ms; TTS is a 220 Hz tone), W `livecoach serve` workers (several share one Redis), and
client processes running the `livecoach qa` harness. Prints one JSON document on stdout:
client turn latency p50/p95, server overhead p95 (first frame − EOT − provider time), barge-in
heard-stop p95, underruns, server CPU per session (from /proc/<pid>/stat of the workers), and
how many finished sessions' records are complete (report, turns, recording with ``--record``),
read back through the worker that did not serve them when there are several.

Honesty note: this machine has 2 cores shared by server(s), clients and the fake provider; the
client side (Opus decode + aiortc per session) costs about as much as the server side, so high-N
numbers are bounded by the client as much as by the server. "client_cpu_pct" is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
sys.path.insert(0, str(ROOT))
from qa.fixtures import fixtures_dir  # noqa: E402
from qa.procs import stop_processes, stop_stdin_child  # noqa: E402

FIXTURES = fixtures_dir()
TOTAL_BUDGET_S = 12 * 60  # the whole bench stays under 12 minutes
LIGHT_CLIENTS = False  # --light: clients judge replies by Opus packet size (qa/rtp_tap.py), ~1/4 the CPU

FAKE_SERVER = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from tests.fakes.openai_server import FakeOpenAI

async def main():
    async with FakeOpenAI(reply="Sure, it is gentle on sensitive skin. It has no fragrance at all.",
                          stt_text="Does this face cream suit sensitive skin?",
                          # like a real STT, a speculative call at the barge-in's first pause
                          # ("Wait, | sorry, let me stop you there.") hears only the words so far
                          stt_script=[(1.3, "Wait,")],
                          stt_delay_s=float(sys.argv[2]), first_token_delay_s=float(sys.argv[3]),
                          tts_delay_s=float(sys.argv[4]),
                          tts_ms_per_char=float(sys.argv[5])) as fake:
        print(fake.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""

# `python -m server` is the livecoach console script (works without an installed entry point).
LIVECOACH = [sys.executable, "-m", "server"]

# Same as `livecoach serve`, but always with the AI-customer hooks (whatever server.practice names
# them), so the bench does not depend on how the CLI picks them up.
SERVE = r"""
import asyncio, signal, sys
sys.path.insert(0, sys.argv[1])
from aiohttp import web
import server.practice as practice
from server.app import make_app
from server.settings import load_settings
try:
    from server.event_loop import loop_runner
except ImportError:  # an older checkout (bench_profile --server-root): plain asyncio
    loop_runner = lambda _name: asyncio.run

async def main(port):
    settings = load_settings()
    settings.server.port = port
    hooks = getattr(practice, "PracticeHooks", None) or getattr(practice, "CoachHooks")
    runner = web.AppRunner(make_app(settings, hooks=hooks()), handle_signals=False,
                           shutdown_timeout=settings.server.shutdown_timeout_s)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()

loop_runner(getattr(load_settings().server, "event_loop", "asyncio"))(main(int(sys.argv[2])))
"""


def pin(cpus: set[int] | None):
    """preexec_fn pinning a child to cores (unpinned workers did worse at the same N when measured)."""
    if not cpus:
        return None
    usable = cpus & os.sched_getaffinity(0)
    return (lambda: os.sched_setaffinity(0, usable)) if usable else None


def start_fake(provider_args: Sequence[str], cpus: set[int] | None = None) -> tuple[subprocess.Popen, str]:
    """The FakeOpenAI process (FAKE_SERVER: STT s, LLM first token s, TTS s, TTS ms per char) and its
    base URL. It runs until its stdin closes: stop it with qa.procs.stop_stdin_child."""
    proc = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, str(ROOT), *provider_args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=pin(cpus))
    url = proc.stdout.readline().strip() if proc.stdout else ""
    if not url:
        stop_stdin_child(proc)
        raise RuntimeError("FakeOpenAI did not start")
    return proc, url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    """utime + stime of a process (and its reaped children), in seconds, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is state (field 3): utime=14, stime=15, cutime=16, cstime=17 → indices 11..14
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def wait_http(url: str, timeout_s: float) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server at {url} did not become healthy in {timeout_s:.0f} s")


def start_workers(n: int, fake_url: str, data_dir: str, redis_url: str | None,
                  pin_cores: bool, server_root: Path = ROOT,
                  record_audio: bool = False) -> list[tuple[subprocess.Popen, str]]:
    workers = []
    ncpu = os.cpu_count() or 1
    for i in range(n):
        port = free_port()
        env = {**os.environ,
               "LIVECOACH_SERVER__PORT": str(port), "LIVECOACH_SERVER__HOST": "127.0.0.1",
               "LIVECOACH_SERVER__DATA_DIR": os.path.join(data_dir, f"w{i}"),
               "LIVECOACH_SERVER__MAX_SESSIONS": "100",
               "LIVECOACH_SERVER__ADMISSION_MAX_CPU_PCT": "0",  # the bench measures past a full core
               "LIVECOACH_SERVER__ADMISSION_MAX_LOOP_LAG_MS": "0",
               "LIVECOACH_MEDIA__ICE_LOOPBACK_ONLY": "true",
               "LIVECOACH_MEDIA__RECORD_AUDIO": str(record_audio).lower(),  # on in a real deployment
               "LIVECOACH_COACH__PROVIDERS__STT": "openai", "LIVECOACH_COACH__PROVIDERS__LLM": "openai",
               "LIVECOACH_COACH__PROVIDERS__TTS": "openai",
               "LIVECOACH_COACH__PROVIDERS__OPENAI__BASE_URL": fake_url,
               "LIVECOACH_COACH__PROVIDERS__OPENAI__API_KEY": "bench"}
        env.pop("REDIS_URL", None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        os.makedirs(env["LIVECOACH_SERVER__DATA_DIR"], exist_ok=True)
        cpus = {i % ncpu} if pin_cores else None
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(server_root), str(port)], env=env,
                                cwd=server_root, stdout=subprocess.DEVNULL, preexec_fn=pin(cpus),
                                stderr=open(os.path.join(data_dir, f"w{i}.log"), "w"))
        workers.append((proc, f"http://127.0.0.1:{port}"))
    for proc, url in workers:
        wait_http(url, 30)
    return workers


def check_records(reads: list[tuple[str, dict]], recording: bool, timeout_s: float = 30.0) -> dict:
    """Every finished session's record, read back through ``url`` (with several workers, one that
    did not serve it: the record came through the shared store). Complete = it has its report,
    at least the turns the client measured and, when the workers record, its recording. Records
    are written as sessions close: wait."""
    pending = {(url, s["session_id"]): s["turns"] for url, s in reads if s.get("session_id")}
    complete, deadline = 0, time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for (url, sid), turns in list(pending.items()):
            try:
                with urllib.request.urlopen(f"{url}/api/sessions/{sid}", timeout=5) as r:
                    record = json.loads(r.read())
            except (OSError, ValueError):
                continue  # not written yet (404) or the worker is busy: next round
            if (isinstance(record.get("report"), dict) and (record.get("turns") or 0) >= turns
                    and (record.get("recording") or not recording)):
                complete += 1
                del pending[(url, sid)]
        if pending:
            time.sleep(1.0)
    return {"records_complete": complete, "records_expected": len(reads),
            "records_missing": sorted(sid for _, sid in pending)[:5]}


def run_level(n: int, turns: int, workers: list[tuple[subprocess.Popen, str]], client_procs: int,
              out_dir: str, timeout_s: float, warmup: bool = False, ramp_s: float | None = None,
              recording: bool = False) -> dict:
    """One concurrency level: split n sessions over client processes and workers, merge the JSON.

    ``ramp_s``: the n sessions start evenly spread over that many seconds, interleaved across the
    client processes (independent users; a whole turn cycle apart they do not talk in step).
    Default: a short ramp, min(5, 0.1 s per session) within each process."""
    procs = client_procs or max(1, min(4, (n + 9) // 10))
    share = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    cpu0 = {p.pid: cpu_s(p.pid) for p, _ in workers}
    # Reaped children during this level are exactly the client processes: their CPU via rusage.
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    clients = []
    started = time.monotonic()
    for i, k in enumerate(s for s in share if s):
        if ramp_s:  # each process spreads its sessions over ramp_s, offset by i slots of ramp_s / n
            time.sleep(max(0.0, started + i * ramp_s / n - time.monotonic()))
        url = workers[i % len(workers)][1]
        out = os.path.join(out_dir, f"{'warm' if warmup else 'n'}{n}-c{i}.json")
        argv = ["--url", url, "--sessions", str(k), "--turns", str(turns),
                "--prompt", str(FIXTURES / "en_question.wav"), "--barge-in", str(FIXTURES / "en_interrupt.wav"),
                "--scenario", "skincare-sensitive-en", "--ramp", str(ramp_s or min(5.0, 0.1 * k)), "--json", out,
                "--quiet", "--reply-timeout", "20", *(["--light"] if LIGHT_CLIENTS else [])]
        # Clients go on the core(s) the workers do not use, when there is one.
        spare = set(range(os.cpu_count() or 1)) - {w % (os.cpu_count() or 1) for w in range(len(workers))}
        clients.append((subprocess.Popen([*LIVECOACH, "qa", *argv], cwd=ROOT, preexec_fn=pin(spare or None),
                                         stdout=subprocess.DEVNULL, stderr=open(out + ".log", "w")), out))
    for proc, _ in clients:
        try:
            proc.wait(timeout=max(5.0, timeout_s - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    server_cpu = sum(cpu_s(p.pid) - cpu0[p.pid] for p, _ in workers)
    turns_all, sessions_all, health, reads = [], [], [], []
    for i, (proc, out) in enumerate(clients):
        try:
            data = json.loads(Path(out).read_text())
        except (OSError, ValueError):
            log = Path(out + ".log").read_text(errors="replace")[-500:] if Path(out + ".log").exists() else ""
            sys.stderr.write(f"client for n={n} wrote no JSON (rc={proc.returncode}): {log}\n")
            continue
        for run in data["runs"]:
            health.append(run.get("client_health") or {})
            turns_all += run["turns"]
            sessions_all += run["session_results"]
            # Read each record back from the next worker (the same one when there is one).
            reads += [(workers[(i + 1) % len(workers)][1], sess) for sess in run["session_results"]]
    from qa.measure import summarize_run

    s = summarize_run(turns_all, sessions_all)
    records = {} if warmup else check_records(reads, recording)
    return {
        "sessions": n, "client_processes": len(clients), "workers": len(workers), "wall_s": round(wall, 1),
        "turns_ok": s["turns"] - s["failed_turns"], "turns": s["turns"], "failed_sessions": s["failed_sessions"],
        "turn_p50_ms": s["turn_ms"]["p50"], "turn_p95_ms": s["turn_ms"]["p95"],
        "server_overhead_p95_ms": s["server_overhead_ms"]["p95"],
        "server_sum_p50_ms": s["server_sum_ms"]["p50"],
        "endpointing_p50_ms": s["stages_ms"]["endpointing"]["p50"],
        "transport_p50_ms": s["stages_ms"]["transport"]["p50"],
        "uplink_p50_ms": s["stages_ms"]["uplink"]["p50"],
        "bargein_p50_ms": s["bargein_ms"]["p50"], "bargein_p95_ms": s["bargein_ms"]["p95"], "bargein_n": s["bargein_ms"]["n"],
        "connect_p95_ms": s["connect_ms"]["p95"],
        "underruns": s["underruns"], "holes": s["holes"], "packets_lost": s["packets_lost"],
        "server_cpu_pct": round(100 * server_cpu / wall, 1),
        "server_cpu_pct_per_session": round(100 * server_cpu / wall / n, 2),
        "client_cpu_pct": round(100 * client_cpu / wall, 1),
        # If these are high the clients, not the server, were the bottleneck (numbers then pessimistic).
        "client_loop_lag_p99_ms": max((h.get("loop_lag_p99_ms") or 0 for h in health), default=None),
        "client_send_lag_max_ms": max((h.get("send_lag_max_ms") or 0 for h in health), default=None),
        **records,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,10,20,40")
    ap.add_argument("--turns", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1, help="livecoach serve processes (>1 shares one Redis)")
    ap.add_argument("--client-procs", type=int, default=0, help="client processes per level (0 = auto)")
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    ap.add_argument("--no-pin", action="store_true", help="do not pin workers/clients to cores")
    ap.add_argument("--instant", action="store_true", help="zero-delay fake providers (issue 14 target)")
    ap.add_argument("--light", action="store_true", help="cheap clients (packet-size voice detection)")
    ap.add_argument("--level-timeout", type=float, default=150.0, help="seconds per level at most")
    ap.add_argument("--record", action="store_true", help="workers record each session's audio (the product default)")
    ap.add_argument("--ramp", type=float, default=None, metavar="S",
                    help="spread each level's session starts over S seconds (default: min(5, 0.1 s per session))")
    args = ap.parse_args()
    global LIGHT_CLIENTS
    LIGHT_CLIENTS = args.light
    levels = [int(x) for x in args.levels.split(",")]
    t_start = time.monotonic()
    data_dir = tempfile.mkdtemp(prefix="livecoach-bench-")
    delays = (0.0, 0.0, 0.0) if args.instant else (0.1, 0.15, 0.05)
    # Instant replies come ~0.3 s sooner than the prompt's 1.5 s silent tail has left the QA
    # client's track, and the barge-in clip queues behind it (~1 s late): a 2 s reply would be
    # over before the barge-in is heard. A ~5 s reply keeps the barge-in inside it.
    ms_per_char = 80.0 if args.instant else 30.0
    fake, fake_url = start_fake([*map(str, delays), str(ms_per_char)],
                                {1} if args.workers == 1 and not args.no_pin else None)
    workers: list[tuple[subprocess.Popen, str]] = []
    results = []
    try:
        workers = start_workers(args.workers, fake_url, data_dir, args.redis_url if args.workers > 1 else None,
                                pin_cores=not args.no_pin, record_audio=args.record)
        # Warm-up (not reported): the first session pays model loading and connection set-up.
        sys.stderr.write("[bench] warm-up session\n")
        run_level(1, 1, workers, 1, data_dir, 60, warmup=True)
        for n in levels:
            left = TOTAL_BUDGET_S - (time.monotonic() - t_start)
            if left < 30:
                results.append({"sessions": n, "skipped": "time budget used up"})
                continue
            sys.stderr.write(f"[bench] level n={n} ({left:.0f} s budget left)\n")
            results.append(run_level(n, args.turns, workers, args.client_procs, data_dir, min(left, args.level_timeout),
                                     ramp_s=args.ramp, recording=args.record))
            sys.stderr.write(f"[bench] {json.dumps(results[-1])}\n")
    finally:
        stop_processes([proc for proc, _ in workers])
        stop_stdin_child(fake)
    print(json.dumps({
        "bench": "latency", "cpus": os.cpu_count(), "workers": args.workers, "recording": args.record, "turns_per_session": args.turns,
        "pinned": not args.no_pin,
        "provider_delays_ms": dict(zip(("stt", "llm_first_token", "tts"), (d * 1000 for d in delays))),
        "levels": results, "total_s": round(time.monotonic() - t_start, 1),
        "note": "client and server share the same 2 cores; client CPU is included in client_cpu_pct",
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
