"""Early replies on mid-sentence pauses, and false interruptions (prints JSON).

    python bench/bench_turn_taking.py [--stack instant|offline] [--trials 20] [--pauses 07,10,12]
                                      [--languages en,zh] [--concurrency 3] [--cough 0]

Each trial feeds a pause fixture (``en_pause_12.wav``: "This cream is made for <1.2 s> people
with sensitive skin, is that right?") into a real CustomerAgent (real silero VAD, real
smart-turn, real PacedAudioTrack drained in real time) in real time, and counts an *early reply*
when the turn was committed before the trainee's last word. ``instant``: the local FakeOpenAI
with zero delays whose STT returns the words spoken so far (by audio length); ``offline``: the
embedded default (faster-whisper, scripted customer, espeak-ng). ``--cough N`` also plays the
cough, the click and an interjection ("Ah!" / "嗯") N times each ~1 s into a reply and reports
false/real interruptions and whether the reply was heard whole.
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
from bench.bench_smart_turn import load_16k  # noqa: E402
from coach.agent import CustomerAgent  # noqa: E402
from coach.providers.factory import build_providers  # noqa: E402
from coach.scenarios import get_scenario  # noqa: E402
from coach.settings import CoachSettings, OpenAISettings, ProviderSettings  # noqa: E402
from coach.vad import SileroVad  # noqa: E402
from media.outbound import PacedAudioTrack  # noqa: E402
from qa.fixtures import LEAD_S, TAIL_S, fixtures_dir  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

FX = fixtures_dir()
SCRIPT = {  # what a perfect STT hears at the pause and at the end (seconds of audio sent)
    "en": [(1.3, "Ah!"), (3.0, "This cream is made for..."), (99.0, "This cream is made for people with sensitive skin, is that right?")],
    "zh": [(1.3, "嗯。"), (4.0, "这款面霜是专门给"), (99.0, "这款面霜是专门给敏感肌的人用的吗")],
}
LEAD_KEEP_S = 0.4


class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


async def trial(name: str, lang: str, settings: CoachSettings, cough: str | None) -> dict[str, Any]:
    scenario = get_scenario(ROOT / "configs" / "scenarios", f"skincare-sensitive-{lang}")
    providers = build_providers(settings.providers, scenario)
    track = PacedAudioTrack(sample_rate=48_000, frame_ms=20)
    sink = Sink()
    agent = CustomerAgent(session_id=name, scenario=scenario, providers=providers, output=track, events=sink,
                          settings=settings, vad=SileroVad.shared())

    async def drain() -> None:
        while True:
            await track.recv()

    drainer = asyncio.create_task(drain())
    pcm = load_16k(FX / name)
    pcm = pcm[int(16000 * (LEAD_S - LEAD_KEEP_S)):]
    last_word_s = len(pcm) / 16000 - TAIL_S  # offset of the final word, from the feed start
    audio = np.concatenate([pcm, np.zeros(int(16000 * 4.0), dtype=np.int16)])
    if cough:  # ~1 s into the reply (it lasts ~5 s): the fixture's 1.5 s tail, then the noise
        noise = load_16k(FX / cough)[int(16000 * (LEAD_S - 0.1)):]
        audio = np.concatenate([pcm[: len(pcm) - int(16000 * 0.2)], noise, np.zeros(16000 * 7, dtype=np.int16)])
    t0 = time.perf_counter_ns()
    try:
        await agent.start()
        for k, i in enumerate(range(0, len(audio) - 319, 320)):
            delay = t0 / 1e9 + (k + 1) * 0.02 - time.perf_counter_ns() / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
            agent.feed(audio[i:i + 320], time.perf_counter_ns())
            committed = any(e["type"] == "state" and e["state"] == "thinking" for e in sink.events)
            if committed and not cough and k * 0.02 > last_word_s:
                break
    finally:
        await agent.close()
        drainer.cancel()
        await asyncio.gather(drainer, return_exceptions=True)
        track.stop()
        await providers.aclose()
    commits = [e for e in sink.events if e["type"] == "state" and e["state"] == "thinking"]
    first_commit_s = (commits[0]["t_ns"] - t0) / 1e9 if commits else None
    turn = agent.turns[0] if agent.turns else None
    return {
        "early": first_commit_s is not None and first_commit_s < last_word_s,
        "eot_after_last_word_ms": None if first_commit_s is None else round((first_commit_s - last_word_s) * 1000),
        "user_text": turn.user_text if turn else None,
        "speculative": agent.stats["speculative_calls"], "wasted": agent.stats["wasted_calls"],
        "speculative_llm": agent.stats["speculative_llm_calls"], "wasted_llm": agent.stats["wasted_llm_calls"],
        "false_interruptions": agent.stats["false_interruptions"],
        "real_interruptions": sum(not r.false_interruption for r in agent.interruptions),
        "whole": turn is not None and not turn.interrupted and turn.reply_played_text == turn.reply_planned_text,
        "resumed": turn is not None and bool(agent.interruptions) and not turn.interrupted
        and turn.reply_played_text == turn.reply_planned_text,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stack", choices=("instant", "offline"), default="instant")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--pauses", default="07,10,12")
    ap.add_argument("--languages", default="en,zh")
    ap.add_argument("--concurrency", type=int, default=3)
    ap.add_argument("--cough", type=int, default=0, help="trials with a cough during the reply")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    sem = asyncio.Semaphore(args.concurrency)
    for lang in args.languages.split(","):
        fake = FakeOpenAI("Sure. It is gentle on sensitive skin, and it has no fragrance at all. Would you like one?",
                          stt_script=SCRIPT[lang], stt_text=SCRIPT[lang][-1][1])
        async with fake:
            if args.stack == "instant":
                oa = OpenAISettings(base_url=fake.base_url, api_key="bench", max_retries=0)
                providers = ProviderSettings(stt="openai", llm="openai", tts="openai", openai=oa)
            else:
                providers = ProviderSettings()
            settings = CoachSettings(greet=False, providers=providers)

            async def one(name: str, cough: str | None) -> dict[str, Any]:
                async with sem:
                    return await trial(name, lang, settings, cough)

            for p in args.pauses.split(","):
                name = f"{lang}_pause_{p}.wav"
                rows = await asyncio.gather(*(one(name, None) for _ in range(args.trials)))
                lat = sorted(r["eot_after_last_word_ms"] for r in rows if r["eot_after_last_word_ms"] is not None)
                results[name] = {
                    "trials": len(rows), "early_replies": sum(r["early"] for r in rows),
                    "eot_after_last_word_ms_p50": lat[len(lat) // 2] if lat else None,
                    "speculative_calls": sum(r["speculative"] for r in rows),
                    "wasted_calls": sum(r["wasted"] for r in rows),
                    "speculative_llm_calls": sum(r["speculative_llm"] for r in rows),
                    "wasted_llm_calls": sum(r["wasted_llm"] for r in rows),
                    "texts": sorted({r["user_text"] or "" for r in rows}),
                }
                print(json.dumps({name: results[name]}, ensure_ascii=False), file=sys.stderr, flush=True)
            for noise in ("cough.wav", "click.wav", f"{lang}_filler.wav") if args.cough else ():
                rows = await asyncio.gather(*(one(f"{lang}_pause_complete.wav", noise) for _ in range(args.cough)))
                results[f"{lang}_{noise[:-4]}_during_reply"] = {
                    "trials": len(rows), "replies_stopped_then_resumed_whole": sum(r["resumed"] for r in rows),
                    "reply_played_whole": sum(r["whole"] for r in rows),
                    "false_interruptions": sum(r["false_interruptions"] for r in rows),
                    "real_interruptions": sum(r["real_interruptions"] for r in rows)}
                print(json.dumps({noise: results[f"{lang}_{noise[:-4]}_during_reply"]}), file=sys.stderr, flush=True)
    spec = sum(v.get("speculative_calls", 0) for v in results.values())
    wasted = sum(v.get("wasted_calls", 0) for v in results.values())
    spec_llm = sum(v.get("speculative_llm_calls", 0) for v in results.values())
    wasted_llm = sum(v.get("wasted_llm_calls", 0) for v in results.values())
    turns = sum(v.get("trials", 0) for k, v in results.items() if "cough" not in k)
    print(json.dumps({"stack": args.stack, "results": results,
                      "wasted_speculative_calls_per_100_turns": round(100 * wasted / max(1, turns), 1),
                      "speculative_calls_per_100_turns": round(100 * spec / max(1, turns), 1),
                      "wasted_llm_calls_per_100_turns": round(100 * wasted_llm / max(1, turns), 1),
                      "speculative_llm_calls_per_100_turns": round(100 * spec_llm / max(1, turns), 1)},
                     ensure_ascii=False, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
