"""Server-side turn overhead and barge-in flush of CustomerAgent (prints JSON).

Providers are the OpenAI ones against the local FakeOpenAI with fixed delays, so what is left
after subtracting provider time is our own overhead (VAD decision -> STT request, clause split,
TTS -> paced track -> first frame).

    python -m bench.bench_turns [--turns 20] [--barge 5]

overhead_ms = (first_reply_frame - eot_decision) - (stt + llm-to-first-clause + tts-first-audio)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coach.agent import CustomerAgent  # noqa: E402
from coach.providers.factory import build_providers  # noqa: E402
from coach.scenarios import get_scenario  # noqa: E402
from coach.settings import CoachSettings, OpenAISettings, ProviderSettings  # noqa: E402
from media.outbound import PacedAudioTrack  # noqa: E402
from qa.fixtures import fixtures_dir  # noqa: E402
from qa.measure import provider_ms, server_overhead_ms  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402
from tests.test_vad import load_16k  # noqa: E402

FIXTURES = fixtures_dir()


class Sink:
    def __init__(self, track: PacedAudioTrack):
        self.track, self.interrupted_at = track, []

    def emit(self, e: dict[str, Any]) -> None:
        if e["type"] == "state" and e["state"] == "interrupted":
            self.interrupted_at.append((e["t_ns"], self.track.queued_ms()))


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2) if xs else float("nan")


def tick(agent: CustomerAgent, pcm: np.ndarray, fast: bool) -> Any:
    async def run() -> None:
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(pcm) - 319, 320)):
            if not fast:
                d = t0 + (k + 1) * 0.02 - time.perf_counter()
                if d > 0:
                    await asyncio.sleep(d)
                agent.feed(pcm[i : i + 320], time.perf_counter_ns())
            else:  # faster than real time: synthetic arrival times ending now
                agent.feed(pcm[i : i + 320], time.perf_counter_ns() - (len(pcm) - i - 320) * 62_500)
    return run()


async def wait(pred, agent: CustomerAgent, timeout: float = 20.0) -> None:
    end = time.perf_counter() + timeout
    while not pred():
        if time.perf_counter() > end:
            raise TimeoutError(agent.state)
        await asyncio.sleep(0.02)
        agent.feed(np.zeros(320, dtype=np.int16), time.perf_counter_ns())


async def main(turns: int, barges: int) -> dict[str, Any]:
    question = load_16k(FIXTURES / "en_question.wav")[int(16000 * 0.7) : -int(16000 * 0.8)]
    interrupt = load_16k(FIXTURES / "en_interrupt.wav")[int(16000 * 0.8) :]
    scenario = get_scenario(ROOT / "configs" / "scenarios", "skincare-sensitive-en")
    delays = dict(stt_delay_s=0.05, first_token_delay_s=0.1, chunk_delay_s=0.01, tts_delay_s=0.03)
    async with FakeOpenAI("Sure. Tell me more about it, please.", tts_ms_per_char=25, **delays) as fake:
        oa = OpenAISettings(base_url=fake.base_url, api_key="bench", max_retries=0)
        settings = CoachSettings(greet=False, providers=ProviderSettings(stt="openai", llm="openai", tts="openai", openai=oa))
        track = PacedAudioTrack(sample_rate=48_000, frame_ms=20)
        sink = Sink(track)

        async def drain() -> None:
            while True:
                await track.recv()

        drainer = asyncio.create_task(drain())
        providers = build_providers(settings.providers, scenario)
        agent = CustomerAgent(session_id="bench", scenario=scenario, providers=providers,
                              output=track, events=sink, settings=settings)
        await agent.start()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        try:
            for n in range(turns):
                await tick(agent, question, fast=True)
                await wait(lambda: len(agent.turns) == n + 1, agent)
            done_turns = list(agent.turns)
            fake.reply = "Sure. " + "It is very gentle and has no fragrance at all. " * 3
            for n in range(barges):
                before = len(agent.interruptions)
                await tick(agent, question, fast=True)
                await wait(lambda: agent.state == "speaking", agent)
                await tick(agent, np.zeros(16000 // 2, dtype=np.int16), fast=False)
                await tick(agent, interrupt, fast=False)
                await wait(lambda: len(agent.interruptions) > before and agent.state in ("speaking", "listening"), agent)
                await wait(lambda: agent.state == "listening", agent)
            cpu_pct = 100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        finally:
            await agent.close()
            await providers.aclose()
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)
            track.stop()
    over, e2e, prov = [], [], []
    for t in done_turns:
        record = t.as_dict()
        over.append(server_overhead_ms(record))
        e2e.append((t.first_reply_frame_ns - t.eot_decision_ns) / 1e6)
        prov.append(provider_ms(record))
    recs = agent.interruptions
    flush_ms = [(ts - r.decision_ns) / 1e6 for r, (ts, _) in zip(recs, sink.interrupted_at)]
    return {
        "turns": len(done_turns),
        "fake_delays_s": delays,
        "eot_to_first_frame_ms": {"p50": pct(e2e, 50), "p95": pct(e2e, 95)},
        "provider_ms": {"p50": pct(prov, 50), "p95": pct(prov, 95)},
        "server_overhead_ms": {"p50": pct(over, 50), "p95": pct(over, 95), "max": round(max(over), 2)},
        "barge_ins": len(recs),
        "barge_onset_to_decision_ms": {"p50": pct([(r.decision_ns - r.user_onset_ns) / 1e6 for r in recs], 50)},
        "decision_to_flushed_ms": {"p50": pct(flush_ms, 50), "max": round(max(flush_ms), 3) if flush_ms else None},
        "queued_ms_after_flush": {"max": max((q for _, q in sink.interrupted_at), default=None)},
        "flushed_ms": {"p50": pct([r.flushed_ms for r in recs], 50)},
        # One live session (VAD on every 32 ms, paced output, turns): % of one core. Includes the
        # in-process fake provider server, so it is an upper bound of the agent's own cost.
        "cpu_per_session_pct_of_core": round(cpu_pct, 1),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--barge", type=int, default=5)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(main(a.turns, a.barge)), indent=2))
