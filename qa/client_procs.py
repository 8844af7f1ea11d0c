"""`livecoach qa --procs N`: one run level split over N client processes, merged into one run.

Each child (multiprocessing, spawn) runs its own event loop and its share of the sessions
(interleaved: session i goes to process i % N, so a ramp loads every process alike), optionally
pinned to one CPU of ``--pin`` (round robin). Children report their run dicts; the parent merges
turns and sessions, recomputes the summary, and sums the generator's CPU: the children's own
process_time over the run (``cpu_pct_per_session``), and everything they used including start-up
(``procs_cpu_s``, from getrusage of the reaped children).
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import resource
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from qa.config import QaConfig
from qa.measure import summarize_run
from qa.runner import run_qa
from qa.server_api import Progress

CHILD_GRACE_S = 30.0  # past the run budget, before a child is terminated


def parse_cpus(text: str) -> list[int]:
    """"0,1" or "0-3" or "0-1,4" → sorted CPU numbers (ValueError on anything else)."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        a, b = int(lo), int(hi) if sep else int(lo)
        if a < 0 or b < a:
            raise ValueError(f"bad CPU range {part!r}")
        cpus.update(range(a, b + 1))
    if not cpus:
        raise ValueError("empty CPU list")
    return sorted(cpus)


def _child(cfg: QaConfig, cpus: list[int] | None, tag: str, quiet: bool, conn: Connection) -> None:
    """Body of one client process: pin, run its sessions, send the run dict back."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not quiet:
            print(f"[qa {tag} {time.perf_counter() - t0:7.2f}s] {msg}", file=sys.stderr, flush=True)

    try:
        run = asyncio.run(run_qa(cfg, say))
        conn.send(("ok", run))
    except Exception as exc:  # reported to the parent, which records the share as failed
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _budget_s(cfg: QaConfig) -> float:
    return cfg.run_timeout_s or (cfg.ramp_s + 30 + cfg.turns * (cfg.reply_timeout_s * 3 + 10))


def run_procs_blocking(cfg: QaConfig, procs: int, pin: list[int] | None, quiet: bool,
                       say: Progress) -> dict[str, Any]:
    """Run ``cfg.sessions`` over ``procs`` child processes; blocks until all are back."""
    cfg.validate()
    run_id = cfg.run_id or os.urandom(4).hex()
    ctx = multiprocessing.get_context("spawn")
    shares = [[i for i in range(cfg.sessions) if i % procs == k] for k in range(procs)]
    shares = [s for s in shares if s]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    children: list[tuple[Any, Connection]] = []
    try:
        for k, share in enumerate(shares):
            child_cfg = dataclasses.replace(cfg, run_id=run_id, indices=share)
            recv_end, send_end = ctx.Pipe(duplex=False)
            cpus = [pin[k % len(pin)]] if pin else None
            proc = ctx.Process(target=_child, args=(child_cfg, cpus, f"p{k}", quiet, send_end),
                               name=f"qa-client-{k}", daemon=True)
            proc.start()
            send_end.close()
            children.append((proc, recv_end))
        say(f"run {run_id}: {cfg.sessions} session(s) over {len(children)} client process(es)"
            + (f" pinned to CPUs {pin}" if pin else ""))
        parts: list[dict[str, Any]] = []
        errors: list[str] = []
        deadline = time.monotonic() + _budget_s(cfg) + CHILD_GRACE_S
        for k, (_proc, conn) in enumerate(children):
            if conn.poll(max(1.0, deadline - time.monotonic())):
                try:
                    status, payload = conn.recv()
                except EOFError:
                    status, payload = "error", "exited without a result"
            else:
                status, payload = "error", "no result before the run budget ran out"
            if status == "ok":
                parts.append(payload)
            else:
                errors.append(f"client process {k}: {payload}")
                say(errors[-1])
    finally:
        for proc, conn in children:
            conn.close()
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    total_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    merged = merge_runs(parts, cfg.sessions, run_id)
    merged["duration_s"] = round(time.perf_counter() - t0, 2)
    merged["client_health"].update(procs=len(children), procs_cpu_s=round(total_cpu, 2),
                                   pinned=pin, process_errors=errors)
    return merged


async def run_procs(cfg: QaConfig, procs: int, pin: list[int] | None, quiet: bool,
                    say: Progress) -> dict[str, Any]:
    """``run_procs_blocking`` off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(
        None, run_procs_blocking, cfg, procs, pin, quiet, say)


def _max(values: list[Any]) -> float | None:
    xs = [v for v in values if v is not None]
    return max(xs) if xs else None


def merge_runs(parts: list[dict[str, Any]], sessions: int, run_id: str) -> dict[str, Any]:
    """One run dict from the per-process ones: all turns and sessions, one summary, and the
    generator's health (worst loop lag, summed CPU, CPU per session over all sessions)."""
    turns = sorted((t for p in parts for t in p["turns"]), key=lambda t: (t["session"], t["turn"]))
    results = sorted((s for p in parts for s in p["session_results"]), key=lambda s: s["session"])
    health = [p["client_health"] for p in parts]
    cpu_s = sum(h.get("cpu_s") or 0.0 for h in health)
    wall_s = _max([h.get("wall_s") for h in health]) or 0.0
    steady = [(h["steady_cpu_pct_per_session"], p["concurrency"]) for h, p in zip(health, parts)
              if h.get("steady_cpu_pct_per_session") is not None]
    first = parts[0] if parts else {}
    return {
        "run_id": run_id,
        "concurrency": sessions,
        "turns_per_session": first.get("turns_per_session"),
        "started_at": min((p["started_at"] for p in parts), default=time.time()),
        "duration_s": _max([p["duration_s"] for p in parts]),
        "config": first.get("config", {}),
        "clock": first.get("clock", {}),
        "client_health": {
            "loop_lag_p99_ms": _max([h.get("loop_lag_p99_ms") for h in health]),
            "loop_lag_max_ms": _max([h.get("loop_lag_max_ms") for h in health]),
            "send_lag_max_ms": _max([h.get("send_lag_max_ms") for h in health]),
            "cpu_s": round(cpu_s, 2), "wall_s": wall_s,
            "cpu_pct": round(100 * cpu_s / wall_s, 1) if wall_s else None,
            "cpu_pct_per_session": round(100 * cpu_s / wall_s / sessions, 3) if wall_s and sessions else None,
            "steady_cpu_pct_per_session": (round(sum(v * n for v, n in steady) / sum(n for _, n in steady), 3)
                                           if steady else None),
            "per_process": health,
        },
        "session_results": results,
        "turns": turns,
        "summary": summarize_run(turns, results),
    }
