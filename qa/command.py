"""`livecoach qa`: end-to-end latency harness measured at the client, with SLO gate and reports.

    livecoach qa --url http://127.0.0.1:8080 --sessions 1,5,10 --turns 3 \
        --prompt en_question.wav --barge-in en_interrupt.wav --slo turn_p95_ms=1500 \
        --json qa.json --html qa.html

As a load generator (~0.5 % of a core per simulated trainee): prompts go out pre-encoded
(``--send opus``, the default), ``--light`` judges replies from RTP packet sizes instead of
decoding them, and ``--procs N`` spreads the sessions over N client processes (``--pin 0,1``
pins them), e.g. ``livecoach qa --url ... --sessions 40 --procs 2 --light --prompt q.wav``.
Every run reports the generator's CPU per session (% of a core) and its event-loop lag.

Exit codes: 0 ok, 1 an --slo threshold was broken (or nothing could be measured), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from qa.client_procs import parse_cpus, run_procs
from qa.config import SEND_MODES, QaConfig
from qa.measure import check_slos, detect_speech_span, parse_slo
from qa.report import format_summary, write_html
from qa.runner import run_qa

__all__ = ["main", "build_parser", "run_levels"]


class _UsageError(Exception):
    pass


def _sessions_list(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N or N1,N2,... (integers)") from None
    if not levels or any(n < 1 or n > 1000 for n in levels):
        raise argparse.ArgumentTypeError(f"{text!r}: session counts must be 1..1000")
    return levels


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="livecoach qa", description="End-to-end voice latency QA, measured at the client.")
    p.add_argument("--url", help="server base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--sessions", type=_sessions_list, default=[1],
                   help="concurrent sessions; a comma list (1,10,20) runs one level after another")
    p.add_argument("--turns", type=int, default=3, help="turns per session")
    p.add_argument("--prompt", action="append", default=[], metavar="WAV", help="prompt WAV, repeatable (cycled)")
    p.add_argument("--scenario", help="scenario id (e.g. skincare-sensitive-en)")
    p.add_argument("--lang", choices=["en", "zh"])
    p.add_argument("--barge-in", metavar="WAV", help="talk over each reply ~1 s after it starts with this WAV")
    p.add_argument("--ramp", type=float, default=0.0, metavar="S", help="spread session starts over S seconds")
    p.add_argument("--slo", action="append", default=[], metavar="KEY=MS", help="e.g. turn_p95_ms=1500 (repeatable)")
    p.add_argument("--json", metavar="PATH", help="write raw results (per turn) as JSON")
    p.add_argument("--html", metavar="PATH", help="write the HTML report")
    p.add_argument("--browser", action="store_true", help="use headless Chromium clients instead of aiortc")
    p.add_argument("--secret", help="sign join tokens locally (when /api/dev/token is off)")
    p.add_argument("--reply-timeout", type=float, default=15.0, metavar="S")
    p.add_argument("--settle-ms", type=float, default=800.0, help="received silence that ends a reply")
    p.add_argument("--greet-wait", type=float, default=3.0, metavar="S", help="wait this long for a greeting")
    p.add_argument("--from-json", action="append", default=[], metavar="PATH",
                   help="skip measuring: rebuild summary/report/SLO check from earlier --json outputs")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--send", choices=SEND_MODES, default="opus",
                   help="opus: prompts encoded once, packets replayed (default); pcm: aiortc encodes every frame")
    light = p.add_mutually_exclusive_group()
    light.add_argument("--light", action="store_true", default=None,
                       help="judge replies by RTP packet size, no decoding (default with --procs)")
    light.add_argument("--decode", dest="light", action="store_false",
                       help="decode the replies and judge their energy (default without --procs)")
    p.add_argument("--procs", type=int, default=1, metavar="N", help="client processes sharing the sessions")
    p.add_argument("--pin", metavar="CPUS", help="pin client processes to these CPUs, round robin (e.g. 0,1 or 2-3)")
    return p


def _progress(quiet: bool):
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        if not quiet:
            print(f"[qa {time.perf_counter() - t0:7.2f}s] {msg}", file=sys.stderr, flush=True)

    return say


async def run_levels(args: argparse.Namespace, say: Any) -> list[dict[str, Any]]:
    runs = []
    light = args.light if args.light is not None else args.procs > 1
    pin = parse_cpus(args.pin) if args.pin else None
    for n in args.sessions:
        cfg = QaConfig(url=args.url.rstrip("/"), sessions=n, turns=args.turns, prompts=args.prompt,
                       scenario=args.scenario, barge_in=args.barge_in, ramp_s=args.ramp, secret=args.secret,
                       lang=args.lang, reply_timeout_s=args.reply_timeout, settle_ms=args.settle_ms,
                       greet_wait_s=args.greet_wait, send=args.send, light=light)
        if args.browser:
            from qa.browser import run_browser_qa  # needs playwright (the [test] extra) only for --browser

            runs.append(await run_browser_qa(cfg, say))
        elif args.procs > 1 or pin:
            runs.append(await run_procs(cfg, args.procs, pin, args.quiet, say))
        else:
            runs.append(await run_qa(cfg, say))
        health = runs[-1].get("client_health") or {}
        if health.get("cpu_pct_per_session") is None:  # browser clients: Chromium's CPU is not ours to count
            continue
        say(f"generator: {health.get('cpu_pct_per_session')} % of a core per session "
            f"(steady {health.get('steady_cpu_pct_per_session')} %), loop lag p99 "
            f"{health.get('loop_lag_p99_ms')} ms, max {health.get('loop_lag_max_ms')} ms")
    return runs


def _load_runs(paths: list[str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _UsageError(f"--from-json {path}: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
            raise _UsageError(f"--from-json {path}: not a livecoach qa JSON output")
        runs.extend(data["runs"])
    return sorted(runs, key=lambda r: r.get("concurrency", 0))


def _usage(parser: argparse.ArgumentParser, msg: str) -> int:
    print(f"{parser.prog}: error: {msg}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on bad usage, 0 for --help
        return int(exc.code or 0)
    try:
        slos = dict(parse_slo(s) for s in args.slo)
    except ValueError as exc:
        return _usage(parser, str(exc))
    if args.turns < 1:
        return _usage(parser, "--turns must be >= 1")
    if args.ramp < 0:
        return _usage(parser, "--ramp must be >= 0")
    if args.procs < 1:
        return _usage(parser, "--procs must be >= 1")
    if args.pin:
        try:
            cpus = parse_cpus(args.pin)
            if not set(cpus) <= os.sched_getaffinity(0):
                raise ValueError(f"CPUs {sorted(set(cpus) - os.sched_getaffinity(0))} are not available")
        except ValueError as exc:
            return _usage(parser, f"--pin {args.pin}: {exc}")
    if args.browser and (args.procs > 1 or args.pin or args.light):
        return _usage(parser, "--procs/--pin/--light drive aiortc clients, not --browser")
    if not args.from_json:
        if not args.url or not args.url.startswith(("http://", "https://")):
            return _usage(parser, "--url http://HOST:PORT is required")
        if not args.prompt:
            return _usage(parser, "at least one --prompt WAV is required")
        for wav in args.prompt + ([args.barge_in] if args.barge_in else []):
            try:
                detect_speech_span(str(Path(wav)))
            except ValueError as exc:
                return _usage(parser, str(exc))
    say = _progress(args.quiet)
    # As the server does (server/serving.py): start-up objects out of the collector's way, so a
    # full collection does not stall the clients' loop (a stall reads as a gap in the reply).
    gc.collect()
    gc.freeze()
    try:
        runs = _load_runs(args.from_json) if args.from_json else asyncio.run(run_levels(args, say))
    except _UsageError as exc:
        return _usage(parser, str(exc))
    except KeyboardInterrupt:
        return 130

    # The SLO verdict is taken on the worst (highest-concurrency) level measured.
    gate = max(runs, key=lambda r: r.get("concurrency", 0)) if runs else None
    violations = check_slos(gate["summary"], slos) if gate else [f"{k}: no data" for k in slos]
    result = {"schema": "livecoach.qa/1", "meta": {"url": args.url or "(from json)",
                                                    "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                    "client": "browser" if args.browser else "aiortc"},
              "runs": runs, "slo": slos, "slo_violations": violations}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.html:
        write_html(result, args.html)
    print(format_summary(result))
    measured = sum(r["summary"]["turns"] - r["summary"]["failed_turns"] for r in runs)
    if violations:
        return 1
    if measured == 0:
        print("no turn could be measured (see errors above)", file=sys.stderr)
        return 1
    return 0
