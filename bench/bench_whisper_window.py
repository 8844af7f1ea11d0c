"""Offline whisper: the 30 s window vs one fitted to the turn (prints JSON).

    python bench/bench_whisper_window.py [--repeats 3]

For each espeak fixture (trimmed like the provider does), the best-of-N decode time and the text
with whisper's fixed 30 s window (``fit_window: false``) and with the fitted window
(coach/providers/whisper_window.py), and the English word error rate of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from coach.providers.whisper import WhisperSTT  # noqa: E402
from coach.settings import WhisperSettings  # noqa: E402
from qa.fixtures import fixtures_dir  # noqa: E402
from tests.test_offline_providers import vad_cut, wer  # noqa: E402

NAMES = ("en_question.wav", "en_price_returns.wav", "en_interrupt.wav", "en_pause_12.wav", "en_filler.wav",
         "zh_question.wav", "zh_pause_12.wav", "en_monologue.wav")


def read(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16), w.getframerate()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    folder = fixtures_dir()
    texts = json.loads((folder / "manifest.json").read_text())
    stts = {"30s": WhisperSTT(WhisperSettings(fit_window=False)), "fitted": WhisperSTT()}
    await stts["fitted"].warmup()
    rows = []
    for name in NAMES:
        pcm, sr = read(folder / name)
        lang = texts[name]["language"]
        audio = vad_cut(pcm, sr)
        row: dict = {"fixture": name, "seconds": round(audio.size / sr, 1)}
        for kind, stt in stts.items():
            best, text = 1e9, ""
            for _ in range(args.repeats):
                text = await stt.transcribe(audio, sr, lang)
                best = min(best, stt.last_stats["decode_ms"])
            row[kind] = {"decode_ms": round(best), "window_s": stt.last_stats["window_s"], "text": text,
                         "wer": round(wer(texts[name]["text"], text), 3) if lang == "en" else None}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
    print(json.dumps({"bench": "whisper_window", "rows": rows}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
