"""Soak: 1,000 join/offer/leave cycles with real aiortc peers against a served process, mixed with
bad SDP and abrupt closes. The server's RSS, fds, threads, asyncio tasks and live sessions must
come back to their baseline. Prints JSON.

    python bench/bench_soak.py [--cycles 1000] [--concurrency 4]

The server is `livecoach serve` (AI-customer pipeline on a fake OpenAI-compatible provider in
this process, the only double) in a subprocess; its figures come from /proc and /healthz.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from qa.audio import ToneTrack  # noqa: E402
from qa.client import ClientError, LivecoachClient, offer_without_direction  # noqa: E402
from server.auth import issue_token  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

SECRET = "soak-bench-secret-0123456789abcdefghijklmnop"
WARMUP_CYCLES = 60
BUSY_TRIES = 30
BUSY_RETRY_S = 1.0  # the server's Retry-After


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_kib": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


async def health(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/healthz") as resp:
        return await resp.json()


async def sample(http: aiohttp.ClientSession, base: str, pid: int) -> dict[str, Any]:
    h = await health(http, base)
    return {**proc_figures(pid), "tasks": h["tasks"], "sessions": h["sessions"], "agents": h["agents"],
            "peers": h["peers"], "rooms": h["rooms"], "thread_kinds": h.get("thread_kinds", {})}


async def settle(http: aiohttp.ClientSession, base: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        h = await health(http, base)
        if h["sessions"] == 0 and h["agents"] == 0 and h["peers"] == 0 and h["rooms"] == 0:
            return
        await asyncio.sleep(0.2)


async def quiet(http: aiohttp.ClientSession, base: str) -> None:
    """Settled, then 2 s more: closing peers' last timers run and the server's idle collection
    (a second after the last peer) has freed the codec pools, so every sample compares alike."""
    await settle(http, base)
    await asyncio.sleep(2.0)


async def one_cycle(base: str, i: int, kind: str, bad_sdp: str, busy: list[int]) -> str:
    """One cycle; a ``server_busy`` refusal (admission by loop lag/CPU: the designed answer to a
    loaded machine) is retried after Retry-After, as a client would, and counted in ``busy``."""
    for _ in range(BUSY_TRIES):
        outcome = await _attempt(base, i, kind, bad_sdp)
        if outcome != "error:server_busy":
            return outcome
        busy[0] += 1
        await asyncio.sleep(BUSY_RETRY_S)
    return outcome


async def _attempt(base: str, i: int, kind: str, bad_sdp: str) -> str:
    token = issue_token(SECRET, f"soak-{i}", "trainee", f"u{i}", 600)
    client = LivecoachClient(name=f"u{i}")
    try:
        await client.connect(base, token, scenario="skincare-sensitive-en")
        if kind == "bad_sdp":
            try:
                await client.request({"type": "offer", "sdp": bad_sdp}, "answer", timeout=20)
                return "unexpected_answer"
            except ClientError as exc:
                return "ok" if exc.reason == "bad_sdp" else f"error:{exc.reason}"
        await client.publish(audio=ToneTrack(440), recv_audio=True, timeout=20)
        if kind == "normal":
            await client.leave()
            await client.wait_for("session_ended", timeout=20)
        # "abrupt": the socket and the peer just go away (close below, no leave)
        return "ok"
    except (ClientError, asyncio.TimeoutError) as exc:
        return f"error:{getattr(exc, 'reason', type(exc).__name__)}"
    finally:
        await client.close()


async def run(cycles: int, concurrency: int) -> dict[str, Any]:
    rng = random.Random(7)
    kinds = [rng.choices(["normal", "bad_sdp", "abrupt"], weights=[70, 15, 15])[0] for _ in range(cycles)]
    bad_sdp = await offer_without_direction()
    async with FakeOpenAI(reply="Sure, it is gentle.", stt_text="Does it suit sensitive skin?") as fake:
        data = tempfile.mkdtemp(prefix="livecoach-soak-")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT),
               "LIVECOACH_SERVER__DATA_DIR": data, "LIVECOACH_SERVER__SECRET": SECRET,
               "LIVECOACH_SERVER__MAX_SESSIONS": "64", "LIVECOACH_MEDIA__ICE_LOOPBACK_ONLY": "true",
               "LIVECOACH_COACH__GREET": "false",
               "LIVECOACH_COACH__PROVIDERS__STT": "openai", "LIVECOACH_COACH__PROVIDERS__LLM": "openai",
               "LIVECOACH_COACH__PROVIDERS__TTS": "openai",
               "LIVECOACH_COACH__PROVIDERS__OPENAI__BASE_URL": fake.base_url,
               "LIVECOACH_COACH__PROVIDERS__OPENAI__API_KEY": "soak"}
        env.pop("REDIS_URL", None)
        server = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--port", str(port),
                                   "--log-level", "warning"], env=env, cwd=data,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(600):
                    try:
                        await health(http, base)
                        break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
                # warm-up at the same concurrency: thread pools (asyncio's executor, codec and
                # inference pools) grow to their working size, lazily loaded models are in memory
                gate0 = asyncio.Semaphore(concurrency)

                async def warm(i: int) -> None:
                    async with gate0:
                        await one_cycle(base, -1 - i, kinds[i % len(kinds)], bad_sdp, [0])

                await asyncio.gather(*(warm(i) for i in range(WARMUP_CYCLES)))
                await quiet(http, base)
                before = await sample(http, base, server.pid)
                results: dict[str, int] = {}
                busy = [0]  # server_busy refusals retried (not cycles lost)
                gate = asyncio.Semaphore(concurrency)
                started = time.perf_counter()

                async def guarded(i: int) -> None:
                    async with gate:
                        outcome = await one_cycle(base, i, kinds[i], bad_sdp, busy)
                        key = f"{kinds[i]}:{outcome}"
                        results[key] = results.get(key, 0) + 1

                # In four slices, sampled between them: a leak grows with every slice, a pool or
                # an allocator's high-water mark levels off.
                slices: list[dict[str, Any]] = []
                edges = [cycles * k // 4 for k in range(5)]
                for lo, hi in zip(edges, edges[1:]):
                    await asyncio.gather(*(guarded(i) for i in range(lo, hi)))
                    await quiet(http, base)
                    figures = await sample(http, base, server.pid)
                    slices.append({"after_cycles": hi, "rss_kib": figures["rss_kib"], "threads": figures["threads"],
                                   "fds": figures["fds"], "tasks": figures["tasks"]})
                elapsed = time.perf_counter() - started
                await quiet(http, base)
                after = await sample(http, base, server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
            stderr = server.stderr.read() if server.stderr else ""
    errors = {k: v for k, v in results.items() if not k.endswith(":ok")}
    return {
        "bench": "soak", "cycles": cycles, "concurrency": concurrency, "elapsed_s": round(elapsed, 1),
        "outcomes": results, "busy_retries": busy[0], "errors": errors, "before": before, "after": after, "slices": slices,
        "delta": {k: after[k] - before[k] for k in before if isinstance(before[k], int)},
        "server_tracebacks": stderr.count("Traceback"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    result = asyncio.run(run(args.cycles, args.concurrency))
    print(json.dumps(result, indent=1))
    back = (result["after"]["sessions"] == 0 and result["after"]["agents"] == 0
            and result["delta"]["threads"] <= 2 and result["delta"]["fds"] <= 10 and result["delta"]["tasks"] <= 5)
    return 0 if back and not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
