"""Smart-turn v3 on the project's fixtures: P(complete) at every pause and at the end (prints JSON).

    python bench/bench_smart_turn.py [--silence-ms 200]

For each speech fixture, the model sees the audio up to ``silence-ms`` after each silent gap
(>= 300 ms, found by energy) and after the end of speech - what the endpointer asks it. A good
threshold is above every mid-sentence pause and below every true end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from coach.smart_turn import SmartTurn  # noqa: E402
from qa.fixtures import fixtures_dir  # noqa: E402


def load_16k(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return pcm[:: rate // 16000] if rate % 16000 == 0 else pcm


def gaps(pcm: np.ndarray, min_gap_ms: int = 300) -> list[int]:
    """Sample index where each silent run (>= min_gap_ms) after speech begins."""
    frame = 160
    loud = [np.abs(pcm[i:i + frame].astype(np.int32)).max() > 300 for i in range(0, len(pcm) - frame, frame)]
    out, run, seen = [], 0, False
    for k, is_loud in enumerate(loud):
        if is_loud:
            if seen and run * 10 >= min_gap_ms:
                out.append((k - run) * frame)
            run, seen = 0, True
        else:
            run += 1
    if seen and run * 10 >= min_gap_ms:
        out.append((len(loud) - run) * frame)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--silence-ms", type=int, default=200)
    args = ap.parse_args()
    model = SmartTurn.shared()
    if model is None:
        print(json.dumps({"error": "smart-turn model not installed"}))
        sys.exit(1)
    fx = fixtures_dir()
    manifest = json.loads((fx / "manifest.json").read_text())
    rows, costs = [], []
    for name in sorted(manifest):
        pcm = load_16k(fx / name)
        cuts = gaps(pcm)
        probs = []
        for i, cut in enumerate(cuts):
            upto = cut + args.silence_ms * 16
            t0 = time.perf_counter_ns()
            p = model.probability(pcm[:upto])
            costs.append((time.perf_counter_ns() - t0) / 1e6)
            probs.append({"at_s": round(cut / 16000, 2), "final": i == len(cuts) - 1, "p": round(p, 3)})
        rows.append({"fixture": name, "points": probs})
    mid = [p["p"] for r in rows for p in r["points"] if not p["final"] and "pause" in r["fixture"]]
    ends = [p["p"] for r in rows for p in r["points"] if p["final"] and "monologue" not in r["fixture"]]
    print(json.dumps({"silence_ms": args.silence_ms, "fixtures": rows,
                      "max_p_mid_sentence_pause": max(mid, default=None),
                      "min_p_true_end": min(ends, default=None),
                      "cost_ms_p50": float(np.percentile(costs, 50)), "cost_ms_max": max(costs)}, indent=1))


if __name__ == "__main__":
    main()
