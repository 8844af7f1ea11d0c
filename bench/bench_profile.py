"""Where a live practice session's server CPU goes: py-spy over a steady window, by category.

    python bench/bench_profile.py [--levels 1,10,20] [--profile-at 10] [--window 20]

Starts the fake OpenAI provider and one served process (bench_latency's: server pinned to CPU 0,
clients to CPU 1 where there are two), then for each level N runs N practice sessions with the
`livecoach qa` harness (many turns, so the sessions stay busy), lets them ramp, and measures the
server's CPU (utime+stime from /proc) over a steady window of --window seconds. At --profile-at
it also samples the server with `py-spy record --format raw` (Python frames; C work such as the
Opus codec or SRTP is charged to the Python call that made it) and sorts every sample into one
category (first rule that matches anywhere in the stack, in the order of CATEGORIES).

Prints one JSON document: per level, server % of a core in total and per session; at the
profiled level, % of samples and % of a core per session for each category.

``--server-root DIR`` serves another checkout (a git worktree of a baseline commit) with this
checkout's clients: per-thread speed differs between machines (a busy 2-core box measured the
same commit at twice the CPU of a quiet one), so a cut is shown against its baseline on the same
machine in the same hour. The JSON names the served commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_latency import FIXTURES, LIVECOACH, ROOT, cpu_s, pin, start_fake, start_workers  # noqa: E402

from qa.procs import stop_processes, stop_stdin_child  # noqa: E402

PROVIDER_DELAYS = ("0.1", "0.15", "0.05", "30")  # STT s, LLM first token s, TTS s, TTS ms per char

# (category, substrings of a frame "function (file:line)"); the first category any frame matches wins.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("turn_detection", ("smart_turn", "coach/turn")),
    ("vad", ("coach/vad.py", "silero", "onnxruntime")),
    ("opus_encode", ("OpusEncoder.",)),
    ("opus_decode", ("OpusDecoder.", "decoder_worker (")),
    ("audio_level_dbov", ("compute_audio_level_dbov",)),  # aiortc's per-frame level, pure Python
    ("srtp", ("pylibsrtp", "protect (", "unprotect (")),
    ("resample", ("resampl",)),
    ("jitter_buffer", ("jitterbuffer",)),
    ("recorder", ("recorder",)),
    ("pacing_outbound", ("media/outbound.py",)),
    ("inbound_audio", ("media/inbound.py",)),  # decoded frames to 16 kHz mono for VAD/STT
    ("media_other", ("media/",)),
    ("rtp_rtcp_ice", ("aiortc/", "aioice/")),
    ("event_emission", ("server/", "json/", "aiosqlite", "redis/")),
    ("pydantic_runtime", ("pydantic",)),
    ("coach_agent", ("coach/", "openai/", "httpx", "httpcore")),
    ("http_ws", ("aiohttp/",)),
    ("event_loop", ("asyncio/", "selectors.py")),
]
# A stack whose leaf is one of these is a thread or the loop waiting, not CPU: py-spy's
# --nonblocking sampling does not always tell idle threads apart.
IDLE_LEAVES = ("Condition.wait (", "EpollSelector.select (", "select (selectors", "_worker (concurrent",
               "_connection_worker_thread (aiosqlite")


def categorize(stack: str) -> str:
    frames = stack.split(";")
    if frames[-1].startswith(IDLE_LEAVES):
        return "idle"
    for name, needles in CATEGORIES:
        if any(needle in frame for frame in frames for needle in needles):
            return name
    return "other"


def read_raw(path: Path) -> Counter[str]:
    """py-spy raw output: ``frame;frame;...;leaf COUNT`` per line."""
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[categorize(stack)] += int(count)
    return counts


def _commit(root: Path) -> str | None:
    """The served checkout's commit (+ "-dirty" with uncommitted changes), None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def _health(url: str) -> dict:
    with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
        return dict(json.loads(resp.read()))


# light: pre-encoded prompts, replies judged by packet size (the cheap generator, more CPU left to
# the server); decode: pre-encoded prompts, decoded replies; pcm: the old path (encode + decode).
CLIENT_MODES = {"light": ["--send", "opus", "--light"], "decode": ["--send", "opus", "--decode"],
                "pcm": ["--send", "pcm", "--decode"]}
CLIENT_MODE = "light"


def start_clients(n: int, url: str, out_dir: str, spare: set[int] | None) -> list[subprocess.Popen]:
    procs = max(1, min(4, (n + 9) // 10))
    share = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    clients = []
    for i, k in enumerate(s for s in share if s):
        out = os.path.join(out_dir, f"n{n}-c{i}.json")
        argv = ["--url", url, "--sessions", str(k), "--turns", "50", "--prompt", str(FIXTURES / "en_question.wav"),
                "--scenario", "skincare-sensitive-en", "--ramp", str(min(5.0, 0.2 * k)), "--json", out,
                "--quiet", "--reply-timeout", "20", *CLIENT_MODES[CLIENT_MODE]]
        clients.append(subprocess.Popen([*LIVECOACH, "qa", *argv], cwd=ROOT, preexec_fn=pin(spare),
                                        stdout=subprocess.DEVNULL, stderr=open(out + ".log", "w")))
    return clients


def stop_clients(clients: list[subprocess.Popen]) -> None:
    for proc in clients:
        proc.send_signal(signal.SIGINT)
    for proc in clients:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_level(n: int, server: subprocess.Popen, url: str, out_dir: str, window_s: float,
                  profile: bool, spare: set[int] | None) -> dict:
    clients = start_clients(n, url, out_dir, spare)
    spy: subprocess.Popen | None = None
    raw = Path(out_dir) / f"profile-n{n}.txt"
    try:
        time.sleep(min(5.0, 0.2 * n) + 8.0)  # ramp, connect, first turn under way
        if profile:
            spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", "100", "--nonblocking",
                                    "--duration", str(int(window_s)), "--output", str(raw), "--pid", str(server.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin(spare))
        live = _health(url).get("peers")
        cpu0, t0 = cpu_s(server.pid), time.monotonic()
        time.sleep(window_s)
        cpu = cpu_s(server.pid) - cpu0
        wall = time.monotonic() - t0
        alive = sum(proc.poll() is None for proc in clients)
    finally:
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        stop_clients(clients)
    result: dict = {"sessions": n, "live_peers_at_start": live, "window_s": round(wall, 1), "client_procs_alive": f"{alive}/{len(clients)}",
                    "server_cpu_pct": round(100 * cpu / wall, 1),
                    "server_cpu_pct_per_session": round(100 * cpu / wall / n, 2)}
    if profile:
        counts = read_raw(raw) if raw.exists() else Counter()
        result["profile_idle_samples_excluded"] = counts.pop("idle", 0)
        total = sum(counts.values())
        result["profile_samples"] = total
        # A category's share of the busy samples times the measured server CPU (from /proc: py-spy
        # may not reach its sampling rate on a loaded machine).
        per_session = 100 * cpu / wall / n
        result["profile"] = {cat: {"pct_of_samples": round(100 * c / total, 1),
                                   "pct_core_per_session": round(per_session * c / total, 2)}
                             for cat, c in counts.most_common()} if total else "py-spy recorded nothing"
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="1,10,20")
    ap.add_argument("--profile-at", type=int, default=10)
    ap.add_argument("--window", type=float, default=20.0, help="steady window per level, seconds")
    ap.add_argument("--event-loop", choices=("asyncio", "uvloop"), default="asyncio", help="the server's loop")
    ap.add_argument("--clients", choices=tuple(CLIENT_MODES), default="light", help="how the QA clients send/receive")
    ap.add_argument("--server-root", type=Path, default=ROOT,
                    help="serve from another checkout (e.g. a git worktree of a baseline commit) to compare "
                         "on the same machine; the clients stay this checkout's")
    ap.add_argument("--record", action="store_true", help="the server records each session's audio (the product default)")
    args = ap.parse_args()
    global CLIENT_MODE
    CLIENT_MODE = args.clients
    os.environ["LIVECOACH_SERVER__EVENT_LOOP"] = args.event_loop  # the workers inherit it
    if shutil.which("py-spy") is None:
        print("bench_profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    two_cores = len(os.sched_getaffinity(0)) >= 2
    spare = {1} if two_cores else None
    data_dir = tempfile.mkdtemp(prefix="livecoach-profile-")
    fake, fake_url = start_fake(PROVIDER_DELAYS, spare)
    workers: list[tuple[subprocess.Popen, str]] = []
    results = []
    try:
        workers = start_workers(1, fake_url, data_dir, None, pin_cores=two_cores,
                                server_root=args.server_root.resolve(), record_audio=args.record)
        server, url = workers[0]
        for n in (int(x) for x in args.levels.split(",")):
            sys.stderr.write(f"[profile] level n={n}\n")
            results.append(measure_level(n, server, url, data_dir, args.window, n == args.profile_at, spare))
            sys.stderr.write(f"[profile] {json.dumps(results[-1])}\n")
            time.sleep(3)  # sessions end and the server settles
    finally:
        stop_processes([proc for proc, _ in workers], 15)
        stop_stdin_child(fake)
    print(json.dumps({"bench": "profile", "server_commit": _commit(args.server_root), "recording": args.record, "pinned": two_cores, "event_loop": args.event_loop, "clients": args.clients, "levels": results,
                      "note": "server pinned to CPU 0, clients + fake provider to CPU 1; shared machine"},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
