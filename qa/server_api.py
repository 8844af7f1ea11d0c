"""What the QA clients ask the server over HTTP (tokens, clock, turn records), and client health."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from qa.measure import ClockAlignment, percentile
from qa.results import SessionResult
from server.auth import issue_token

Progress = Callable[[str], None]


async def get_token(http: aiohttp.ClientSession, url: str, secret: str | None, room: str, user: str) -> str:
    """A trainee join token: signed here with ``secret``, else from the server's dev endpoint."""
    if secret:
        return issue_token(secret, room, "trainee", user, ttl_s=3600)
    async with http.post(f"{url}/api/dev/token", json={"room": room, "role": "trainee", "user": user}) as r:
        if r.status != 200:
            raise RuntimeError(f"POST /api/dev/token: HTTP {r.status} {(await r.text())[:200]} "
                               "(dev tokens off? pass --secret)")
        return (await r.json())["token"]


async def measure_clock(http: aiohttp.ClientSession, url: str, samples: int = 5) -> ClockAlignment:
    """Offset of the server's perf clock vs ours (0 on one machine: CLOCK_MONOTONIC is shared)."""
    out: list[tuple[int, int]] = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        try:
            async with http.get(f"{url}/api/clock") as r:
                if r.status != 200:
                    break
                body = await r.json()
        except aiohttp.ClientError:
            break
        t1 = time.perf_counter_ns()
        out.append((int(body["perf_ns"]) - (t0 + t1) // 2, t1 - t0))
    return ClockAlignment.from_samples(out)


async def collect_server_turns(http: aiohttp.ClientSession, url: str, results: list[SessionResult],
                               say: Progress) -> dict[int, list[dict[str, Any]]]:
    """Every measured session's server turn records, by session index."""
    # The server writes a turn record when the reply finishes; give the last ones a moment.
    await asyncio.sleep(0.3)
    server_turns: dict[int, list[dict[str, Any]]] = {}
    for res in results:
        if res.session_id and res.turns:
            try:
                server_turns[res.session] = await fetch_server_turns(http, url, res.session_id, res.token)
            except (RuntimeError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                say(f"session {res.session}: no server stage timestamps ({exc})")
    return server_turns


async def fetch_server_turns(http: aiohttp.ClientSession, url: str, session_id: str,
                             token: str | None) -> list[dict[str, Any]]:
    """The session's ``turn`` and ``interruption`` events (empty when the server has none yet)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(f"{url}/api/sessions/{session_id}/turns", headers=headers) as r:
        if r.status == 404:
            return []
        if r.status != 200:
            raise RuntimeError(f"GET /api/sessions/{session_id}/turns: HTTP {r.status}")
        body = await r.json()
    events = body.get("turns", body.get("events", [])) if isinstance(body, dict) else body
    return [e for e in events or [] if isinstance(e, dict)]


class LoopLag:
    """Event-loop lag of the client process: if this is high, the client (not the server) is slow."""

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = period_s
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="qa-loop-lag")

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.period_s)
            self.samples.append((time.perf_counter() - t - self.period_s) * 1000)

    async def stop(self) -> dict[str, float | None]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        p99 = percentile(self.samples, 99)
        return {"loop_lag_p99_ms": None if p99 is None else round(p99, 1),
                "loop_lag_max_ms": round(max(self.samples), 1) if self.samples else None}


class CpuMeter:
    """CPU of this client process (every thread: time.process_time) per simulated session, as % of
    one core, over the whole run and over its steady window (all sessions connected → the first
    one done: no handshakes, no teardown)."""

    def __init__(self, sessions: int) -> None:
        self.sessions = max(1, sessions)
        self._start: tuple[float, float] | None = None
        self._steady_start: tuple[float, float] | None = None
        self._steady_end: tuple[float, float] | None = None

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def start(self) -> None:
        self._start = self._now()

    def mark_steady_start(self) -> None:
        if self._steady_start is None and self._steady_end is None:
            self._steady_start = self._now()

    def mark_steady_end(self) -> None:
        if self._steady_start is not None and self._steady_end is None:
            self._steady_end = self._now()

    def _pct(self, a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
        if a is None or b is None or b[0] - a[0] < 1.0:
            return None
        return round(100 * (b[1] - a[1]) / (b[0] - a[0]) / self.sessions, 3)

    def stop(self) -> dict[str, float | None]:
        end = self._now()
        wall, cpu = (end[0] - self._start[0], end[1] - self._start[1]) if self._start else (0.0, 0.0)
        steady = (self._steady_end[0] - self._steady_start[0]
                  if self._steady_start is not None and self._steady_end is not None else None)
        return {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                "cpu_pct": round(100 * cpu / wall, 1) if wall > 0 else None,
                "cpu_pct_per_session": self._pct(self._start, end),
                "steady_s": None if steady is None else round(steady, 1),
                "steady_cpu_pct_per_session": self._pct(self._steady_start, self._steady_end)}
