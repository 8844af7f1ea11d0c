"""QA harness: measurement units, report, and the full `livecoach qa` run against an in-process server."""

from __future__ import annotations

import json
import math
import os
import wave
from pathlib import Path

import numpy as np
import pytest

from coach.turn_stages import STAGE_NAMES
from qa import measure
from qa.detect import ReceivedAudioMonitor
from qa.measure import (
    ClockAlignment,
    check_slos,
    detect_speech_span,
    match_server_turn,
    parse_slo,
    percentile,
    stage_breakdown,
    summarize,
    summarize_run,
)
from qa.report import format_summary, render_html

MS = 1_000_000


# ---- measurement units ------------------------------------------------------------------------


def test_speech_span_of_fixture_is_inside_the_padding(fixtures_dir: Path) -> None:
    span = detect_speech_span(str(fixtures_dir / "en_question.wav"))
    assert span.onset_s == pytest.approx(1.0, abs=0.05)
    # The padding says the offset is at duration − 1.5 s; espeak's trailing near-silence makes the
    # real offset a bit earlier, never later.
    assert span.duration_s - 1.5 - 0.5 < span.offset_s <= span.duration_s - 1.5 + 0.02


def test_speech_span_errors_are_clear(tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    with wave.open(str(silent), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.zeros(16000, np.int16).tobytes())
    with pytest.raises(ValueError, match="no speech"):
        detect_speech_span(str(silent))
    bogus = tmp_path / "bogus.wav"
    bogus.write_text("not audio")
    with pytest.raises(ValueError, match="not a readable WAV"):
        detect_speech_span(str(bogus))
    with pytest.raises(ValueError):
        detect_speech_span(str(tmp_path / "missing.wav"))


def _tone(ms: float = 20, amp: float = 0.3) -> np.ndarray:
    n = int(48 * ms)
    return (np.sin(2 * np.pi * 220 * np.arange(n) / 48000) * amp * 32767).astype(np.int16)


def _feed(mon: ReceivedAudioMonitor, pattern: str, t0: int = 0, step_ms: int = 20) -> int:
    """Feed frames: '1' = tone, '0' = silence, '_' = a missing frame (arrival gap)."""
    t = t0
    for ch in pattern:
        t += step_ms * MS
        if ch == "_":
            continue
        mon.feed(t, _tone() if ch == "1" else np.zeros(960, np.int16))
    return t


def test_monitor_onsets_offsets_holes_and_gaps() -> None:
    mon = ReceivedAudioMonitor(hold_ms=100)
    # 10 silent, 10 voiced, 4 silent (80 ms hole < hold), 5 voiced, 4 missing frames, 3 voiced, 10 silent
    _feed(mon, "0" * 10 + "1" * 10 + "0" * 4 + "1" * 5 + "____" + "111" + "0" * 10)
    assert len(mon.segments) == 1
    seg = mon.segments[0]
    assert seg.onset_ns == 11 * 20 * MS
    assert seg.offset_ns == (10 + 10 + 4 + 5 + 4 + 3 + 1) * 20 * MS
    stats = mon.window_stats(seg.onset_ns, seg.offset_ns)
    assert stats["holes"] == 1 and stats["hole_ms"] == pytest.approx(80, abs=1)
    assert stats["underruns"] == 1 and stats["underrun_ms"] == pytest.approx(100, abs=1)
    assert mon.onset_after(seg.onset_ns + 1) is None
    assert mon.offset_after(0) == seg.offset_ns


async def test_monitor_waits() -> None:
    mon = ReceivedAudioMonitor(hold_ms=60)
    t = _feed(mon, "000")
    import asyncio

    waiter = asyncio.create_task(mon.wait_onset(0, timeout_s=2))
    await asyncio.sleep(0)
    t = _feed(mon, "11", t0=t)
    assert await waiter == 4 * 20 * MS
    with pytest.raises(TimeoutError):
        await mon.wait_offset(0, timeout_s=0.05)
    t = _feed(mon, "0000", t0=t)
    assert await mon.wait_offset(0, timeout_s=1) == 6 * 20 * MS
    assert await mon.wait_quiet(60, timeout_s=1) == 6 * 20 * MS


async def test_monitor_waiters_resolve_on_the_frame_their_condition_holds_and_do_not_pile_up() -> None:
    import asyncio

    mon = ReceivedAudioMonitor(hold_ms=60)
    marks: dict[str, int] = {}
    quiet = asyncio.create_task(mon.wait_quiet(60, timeout_s=5))
    marked = asyncio.create_task(mon.wait(lambda: marks.get("sent"), timeout_s=5))  # outside state
    for _ in range(3):
        with pytest.raises(TimeoutError):  # each timed-out wait leaves nothing behind
            await mon.wait_onset(10**12, timeout_s=0.01)
    t = _feed(mon, "1111")
    await asyncio.sleep(0)
    assert not quiet.done() and not marked.done()
    marks["sent"] = 7
    t = _feed(mon, "00", t0=t)  # a frame re-checks the outside state; 40 ms of quiet is not 60
    assert await marked == 7
    assert not quiet.done()
    _feed(mon, "00", t0=t)
    assert await quiet == 5 * 20 * MS
    assert mon._waiters == []  # resolved and timed-out waiters are dropped as frames come


def test_stats_and_percentiles() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 95) == 5.0
    assert percentile(list(range(101)), 95) == pytest.approx(95)
    s = summarize([100, 200, None, 300])
    assert s["n"] == 3 and s["p50"] == 200 and s["max"] == 300


def test_stage_breakdown_sums_to_client_latency() -> None:
    end = 10_000 * MS
    server = {"user_speech_end_ns": end + 90 * MS, "eot_decision_ns": end + 600 * MS,
              "stt_final_ns": end + 700 * MS, "llm_first_token_ns": end + 850 * MS,
              "tts_first_audio_ns": end + 900 * MS, "first_reply_frame_ns": end + 910 * MS,
              "stage_ms": {"stt": 100.0, "llm": 150.0, "tts": 50.0}}
    heard = end + 995 * MS
    stages = stage_breakdown(end, heard, server)
    assert sum(stages.values()) == pytest.approx(995, abs=0.5)
    assert stages["endpointing"] == 510 and stages["transport"] == 85
    assert measure.server_overhead_ms(server) == pytest.approx(10, abs=0.1)
    assert measure.server_stage_sum_ms(server) == pytest.approx(820)
    # STT speculated at the pause and done by the decision: its 100 ms were not waited for.
    hidden = {**server, "stt_final_ns": end + 600 * MS, "llm_first_token_ns": end + 750 * MS,
              "tts_first_audio_ns": end + 800 * MS, "first_reply_frame_ns": end + 810 * MS}
    assert measure.server_overhead_ms(hidden) == pytest.approx(10, abs=0.1)
    # A different clock domain: the same turn, server clock 5 s ahead.
    shifted = {k: (v + 5_000 * MS if k.endswith("_ns") else v) for k, v in server.items()}
    assert stage_breakdown(end, heard, shifted, clock_offset_ns=5_000 * MS) == stages
    used: set[int] = set()
    turns = [{"user_speech_end_ns": end - 4_000 * MS}, server]
    assert match_server_turn(end, turns, used) is server
    assert match_server_turn(end, turns, used) is None  # already used; the other is too far


def test_clock_alignment() -> None:
    same = ClockAlignment.from_samples([(300_000, 2 * MS), (100_000, 800_000)])
    assert same.same_clock and same.offset_ns == 0 and same.rtt_ns == 800_000
    other = ClockAlignment.from_samples([(7_000 * MS, 2 * MS)])
    assert not other.same_clock and other.offset_ns == 7_000 * MS


def test_slo_parse_and_check() -> None:
    assert parse_slo("turn_p95_ms=1500") == ("turn_p95_ms", 1500.0)
    for bad in ("turn_p95_ms", "latency=3", "turn_p95_ms=abc", "turn_p95_ms=-1"):
        with pytest.raises(ValueError):
            parse_slo(bad)
    summary = {"turn_ms": {"p95": 1200.0}, "bargein_ms": {"p95": None}, "underruns": 3}
    assert check_slos(summary, {"turn_p95_ms": 1500}) == []
    broken = check_slos(summary, {"turn_p95_ms": 1000, "bargein_p95_ms": 250, "underruns_max": 2})
    assert len(broken) == 3 and "no data" in broken[1]


def _fake_result() -> dict:
    runs = []
    for n in (1, 4):
        turns = []
        for i in range(n * 2):
            stages = {"uplink": 90.0, "endpointing": 500.0, "stt": 100.0, "llm": 150.0, "tts": 50.0,
                      "send": 5.0 + i, "transport": 85.0}
            turns.append({"session": i // 2, "turn": i % 2, "latency_ms": sum(stages.values()), "stages_ms": stages,
                          "server_sum_ms": 805.0 + i, "server_overhead_ms": 5.0 + i,
                          "bargein_ms": 120.0 + i if i % 2 else None, "underruns": 0, "holes": 0, "error": None})
        sessions = [{"session": k, "connect_ms": 40.0 + k, "packets_lost": 0, "error": None} for k in range(n)]
        runs.append({"concurrency": n, "turns_per_session": 2, "duration_s": 3.0, "turns": turns,
                     "session_results": sessions, "summary": summarize_run(turns, sessions)})
    return {"schema": "livecoach.qa/1", "runs": runs, "slo": {"turn_p95_ms": 100.0},
            "slo_violations": ["turn_p95_ms: 990 > 100"], "meta": {"url": "http://127.0.0.1:1"}}


def test_report_html_and_table() -> None:
    result = _fake_result()
    page = render_html(result)
    assert page.startswith("<!doctype html>") and "</html>" in page
    assert page.count("<svg") >= 5  # 2 histograms + 2 barge-in + vs-concurrency + stacked bars
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "").replace("http://127.0.0.1:1", "")
    assert "latency (ms) vs sessions" in page and "FAIL" in page
    table = format_summary(result)
    assert "turn latency" in table and "SLO: FAIL" in table
    json.dumps(result)  # the JSON output is plain data
    assert not math.isnan(result["runs"][1]["summary"]["turn_ms"]["p95"])


# ---- the whole harness against an in-process server ---------------------------------------------

import asyncio  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402

from qa.command import main as qa_main  # noqa: E402

STT_S, LLM_S, TTS_S = 0.1, 0.15, 0.05


def _practice_hooks():
    """The AI-customer wiring, if the server exposes it separately from make_app's default."""
    try:
        import server.practice as practice
    except ImportError:
        return None
    for name in ("PracticeHooks", "CoachHooks"):
        if hasattr(practice, name):
            return getattr(practice, name)
    return None


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """make_app + FakeOpenAI (fixed delays) on their own loop in a thread; yields the base URL."""
    from aiohttp import web

    from server.app import make_app
    from server.settings import load_settings
    from tests.fakes.openai_server import FakeOpenAI

    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict = {}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))

    async def start() -> None:
        fake = FakeOpenAI(reply="Sure, it is gentle on sensitive skin. It has no fragrance at all.",
                          stt_text="Does this face cream suit sensitive skin?", stt_delay_s=STT_S,
                          first_token_delay_s=LLM_S, tts_delay_s=TTS_S, tts_ms_per_char=30.0)
        await fake.__aenter__()
        settings = load_settings()
        settings.server.data_dir = str(tmp_path_factory.mktemp("qa-data"))
        settings.server.redis_url = None
        settings.media.ice_loopback_only = True
        settings.media.record_audio = False
        prov = settings.coach.providers
        prov.stt = prov.llm = prov.tts = "openai"
        prov.openai.base_url, prov.openai.api_key = fake.base_url, "test"
        hooks_cls = _practice_hooks()
        app = make_app(settings, hooks=hooks_cls() if hooks_cls else None)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        box.update(fake=fake, runner=runner)

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # surface startup failures in the test, not a hang
            box["error"] = exc
        started.set()
        if "error" not in box:
            loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "server did not start"
    if "error" in box:
        raise box["error"]
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def stop() -> None:
        await box["runner"].cleanup()
        await box["fake"].__aexit__(None, None, None)

    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_qa_run_two_sessions(live_server: str, fixtures_dir: Path, tmp_path: Path, capsys) -> None:
    out_json, out_html = tmp_path / "qa.json", Path(os.environ.get("QA_TEST_HTML", tmp_path / "qa.html"))
    prompt = str(fixtures_dir / "en_question.wav")
    rc = qa_main(["--url", live_server, "--sessions", "2", "--turns", "2", "--prompt", prompt, "--send", "pcm",
                  "--scenario", "skincare-sensitive-en", "--ramp", "0.5", "--slo", "turn_p95_ms=1",
                  "--json", str(out_json), "--html", str(out_html), "--reply-timeout", "10"])
    captured = capsys.readouterr()
    assert rc == 1, captured.err[-2000:]  # 1 ms is impossible: the SLO gate must fail
    assert "turn_p95_ms" in captured.out and "SLO: FAIL" in captured.out
    assert "connected in" in captured.err  # progress lines on stderr
    result = json.loads(out_json.read_text())
    run = result["runs"][0]
    assert run["concurrency"] == 2 and len(run["turns"]) == 4
    assert all(s["error"] is None for s in run["session_results"]), run["session_results"]
    # Generous: the first session also pays the server's cold start (models, providers).
    assert all(s["connect_ms"] is not None and 0 < s["connect_ms"] < 15000 for s in run["session_results"])
    assert all(s["first_audio_ms"] >= s["connect_ms"] for s in run["session_results"])
    print(json.dumps([{k: t.get(k) for k in ("latency_ms", "stages_ms", "underruns")} for t in run["turns"]]),
          json.dumps(run["client_health"]))
    for t in run["turns"]:
        assert t["error"] is None, t
        # Provider delays alone are 300 ms; endpointing adds the VAD silence window.
        assert STT_S * 1000 + LLM_S * 1000 + TTS_S * 1000 < t["latency_ms"] < 60_000, t  # lower bound: behaviour
        assert t["server"] is not None, "turn not joined with the server's stage timestamps"
        assert t["latency_ms"] > t["server_sum_ms"] > 0
        stages = t["stages_ms"]
        assert sum(v for v in stages.values()) == pytest.approx(t["latency_ms"], abs=1.0)
        assert stages["transport"] > 0 and stages["endpointing"] > 0
        assert stages["llm"] >= LLM_S * 1000 * 0.9
        # The server's stages in `--json` are the ones REST /turns gives for this turn (coach/turn_stages.py)
        assert {k: stages[k] for k in STAGE_NAMES} == t["server"]["stages_ms"]
    page = out_html.read_text()
    assert "<svg" in page and "turn latency" in page
    # The same numbers with a generous SLO pass (report rebuilt from the JSON, no new run).
    rc = qa_main(["--from-json", str(out_json), "--slo", "turn_p95_ms=10000", "--slo", "connect_p95_ms=10000",
                  "--html", str(tmp_path / "again.html")])
    assert rc == 0
    assert (tmp_path / "again.html").exists()


def test_qa_usage_errors(tmp_path: Path, fixtures_dir: Path) -> None:
    prompt = str(fixtures_dir / "en_question.wav")
    assert qa_main(["--prompt", prompt]) == 2  # no --url
    assert qa_main(["--url", "http://127.0.0.1:9", "--prompt", prompt, "--slo", "nonsense=1"]) == 2
    assert qa_main(["--url", "http://127.0.0.1:9", "--prompt", str(tmp_path / "missing.wav")]) == 2
    assert qa_main(["--url", "http://127.0.0.1:9", "--prompt", prompt, "--sessions", "0"]) == 2
    assert qa_main(["--from-json", str(tmp_path / "nope.json")]) == 2


def test_qa_barge_in(live_server: str, fixtures_dir: Path, tmp_path: Path) -> None:
    """Talking over the reply: the reply audio must stop arriving, and the server saw it too."""
    out_json = tmp_path / "barge.json"
    rc = qa_main(["--url", live_server, "--sessions", "1", "--turns", "1", "--prompt",
                  str(fixtures_dir / "en_question.wav"), "--barge-in", str(fixtures_dir / "en_interrupt.wav"),
                  "--scenario", "skincare-sensitive-en", "--json", str(out_json), "--quiet",
                  "--slo", "bargein_p95_ms=3000"])
    turn = json.loads(out_json.read_text())["runs"][0]["turns"][0]
    assert rc == 0, turn
    # The reply must stop (and stay stopped) within the SLO; a cut landing in a pause between
    # the reply's sentences is heard from that pause, so there is no lower bound but zero.
    assert 0 < turn["bargein_ms"] < 3_000, turn
    assert turn["holes"] == 0, turn  # the pause between the cut reply and the next one is no hole
    assert turn["bargein_reply_ms"] is not None  # the talk-over got its own answer
    server = turn["bargein_server"]
    if server is not None:  # joined with the server's interruption record when it is logged
        # The server decided while we were talking (VAD needs speech first), within the SLO.
        assert 0 < server["decision_ms"] < 3_000, server


# ---- the light load generator: pre-encoded prompts, packet-size detection, client processes ------

import fractions  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402
from aiortc import RTCPeerConnection  # noqa: E402
from aiortc.codecs.opus import OpusDecoder, OpusEncoder  # noqa: E402
from aiortc.jitterbuffer import JitterFrame  # noqa: E402
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters  # noqa: E402
from aiortc.rtp import HeaderExtensionsMap, RtpPacket  # noqa: E402
from av import AudioFrame  # noqa: E402

from media.lean_send import LeanClock  # noqa: E402
from media.peer import create_peer_connection  # noqa: E402
from media.settings import MediaSettings  # noqa: E402
from qa.audio import OUT_RATE  # noqa: E402
from qa.client import LivecoachClient  # noqa: E402
from qa.client_procs import merge_runs, parse_cpus  # noqa: E402
from qa.detect import DEFAULT_ON_DBFS, level_dbfs  # noqa: E402
from qa.lean_send import PHASES, LeanOpusTrack, attach_lean_sender  # noqa: E402
from qa.opus_track import EncodedSound, OpusFileTrack, encode_opus, encoded_sound, silent_packet  # noqa: E402
from qa.rtp_tap import RtpVoiceTap, opus_voiced, rtp_payload  # noqa: E402
from qa.server_api import get_token  # noqa: E402


def test_opus_packet_size_tells_digital_silence_from_sound() -> None:
    quiet = np.random.default_rng(1).integers(-1, 2, 48000).astype(np.int16)  # ±1 dither, about -90 dBFS
    assert not any(opus_voiced(p) for p in encode_opus(np.zeros(48000, np.int16)))
    assert all(opus_voiced(p) for p in encode_opus(np.tile(_tone(), 50)))
    assert all(opus_voiced(p) for p in encode_opus(quiet)[1:])
    assert not opus_voiced(silent_packet()) and len(silent_packet()) <= 8


def _server_packets(pcm: np.ndarray) -> list[bytes]:
    """Opus packets as the server's aiortc sender makes them from 20 ms frames of ``pcm``."""
    enc, out = OpusEncoder(), []
    for i in range(0, len(pcm) - 959, 960):
        frame = AudioFrame.from_ndarray(pcm[i : i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, i, fractions.Fraction(1, 48000)
        out += enc.encode(frame)[0]
    return out


def test_rtp_tap_sees_the_edges_the_decoded_energy_sees() -> None:
    """Tone, silence, a short burst: the encoder sends full-size packets of fading tail after each
    (about -50 and -90 dBFS) before its 3-byte silence; the tap decodes only those edges."""
    tone = _tone(510, amp=0.25)
    pcm = np.concatenate([np.zeros(9600, np.int16), tone, np.zeros(19200, np.int16), tone[:4800],
                          np.zeros(9600, np.int16)])
    packets = _server_packets(pcm)
    decoder = OpusDecoder()
    reference, light = ReceivedAudioMonitor(hold_ms=20), ReceivedAudioMonitor(hold_ms=20)
    tap = RtpVoiceTap(light, prefetch=2)
    levels = []
    for i, payload in enumerate(packets):
        levels.append(level_dbfs(decoder.decode(JitterFrame(payload, i * 960))[0].to_ndarray()))
        tap.on_packet(i, payload, i * 20 * MS)
    for i, level in enumerate(levels[:-2]):  # what the decoding client hears: frame i when i+2 arrives
        reference.feed_level((i + 2) * 20 * MS, level)
    tails = [i for i, p in enumerate(packets) if opus_voiced(p) and levels[i] < DEFAULT_ON_DBFS]
    assert tails, "no encoder tail: the case this tap handles is gone"
    assert [(g.onset_ns, g.offset_ns) for g in light.segments] == [(g.onset_ns, g.offset_ns) for g in reference.segments]
    assert len(light.segments) == 2
    assert tap.decoded < len(packets) and tap.stats()["lost"] == 0


def test_rtp_tap_dates_frames_like_the_jitter_buffer_and_counts_losses() -> None:
    mon = ReceivedAudioMonitor(hold_ms=20)
    tap = RtpVoiceTap(mon, prefetch=2)
    loud = _server_packets(np.concatenate([np.zeros(1920, np.int16), _tone(200, amp=0.25)]))[2:6]
    quiet = silent_packet()
    # seq 65534.. wraps; 3 is lost; a duplicate of 4 comes late
    for seq, payload, t in [(65534, quiet, 1), (65535, loud[0], 2), (0, loud[1], 3), (1, loud[2], 4), (2, quiet, 5),
                            (4, quiet, 7), (4, loud[3], 8), (5, quiet, 9), (6, quiet, 10)]:
        tap.on_packet(seq, payload, t * 20 * MS)
    stats = tap.stats()
    assert (stats["received"], stats["lost"], stats["late"]) == (8, 1, 1)
    # a frame is heard when the packet two later arrives: 65535's at t=4, 2's (quiet) at t=9
    assert mon.voiced == [False, True, True, True, False, False]
    assert mon.arrivals == [t * 20 * MS for t in (3, 4, 5, 7, 9, 10)]
    assert mon.segments[0].onset_ns == 4 * 20 * MS and mon.segments[0].offset_ns == 9 * 20 * MS


async def test_opus_track_replays_packets_with_rtp_timing_and_marks() -> None:
    pcm = np.concatenate([np.zeros(9600, np.int16), np.tile(_tone(), 15), np.zeros(9600, np.int16)])
    sound = EncodedSound(pcm=pcm, packets=encode_opus(pcm))
    assert len(sound.packets) == len(pcm) // 960
    track = OpusFileTrack()
    first = await track.recv()  # idle: the silent packet
    assert bytes(first) == silent_packet() and first.pts == 0 and first.time_base == fractions.Fraction(1, OUT_RATE)
    clip = track.play_sound(sound, onset_s=0.2, offset_s=0.5)
    packer = OpusEncoder()
    sent: list[tuple[int, int]] = []
    for _ in range(len(sound.packets) + 2):
        packet = await track.recv()
        sent.append((time.perf_counter_ns(), len(bytes(packet))))
        payloads, timestamp = packer.pack(packet)  # what aiortc's sender does with an av.Packet
        assert timestamp == 960 * len(sent) and payloads == [bytes(packet)]
    track.stop()
    assert [n for _, n in sent[:10]] == [3] * 10 and sent[10][1] > 8 and sent[-1][1] == 3
    assert clip.onset_ns is not None and clip.offset_ns is not None and clip.end_ns is not None
    assert abs(clip.onset_ns - sent[10][0]) < 5 * MS  # the packet carrying the onset
    assert abs(clip.offset_ns - sent[25][0]) < 5 * MS
    assert track.idle


async def test_light_detector_agrees_with_decoding(live_server: str, fixtures_dir: Path) -> None:
    """One real session, sent on the lean clock: the server hears the prompt and answers, and the
    RTP packet-size detector and the decoded energy see the same edges."""
    decoded, light = ReceivedAudioMonitor(), ReceivedAudioMonitor()
    tap = RtpVoiceTap(light, passthrough=True)  # packets still go on to aiortc's decoder
    client = LivecoachClient(name="qa-cmp")
    track = LeanOpusTrack()  # sent as light mode sends: on the lean clock

    def prepare(pc: RTCPeerConnection) -> None:
        tap.attach_audio(pc)
        attach_lean_sender(pc, track)

    async with aiohttp.ClientSession() as http:
        token = await get_token(http, live_server, None, "qa-cmp-room", "qa-cmp")
    reader = None
    try:
        await client.connect(live_server, token, scenario="skincare-sensitive-en")
        await client.publish(audio=track, prepare=prepare)
        while client.received_audio is None:
            await asyncio.sleep(0.02)
        remote = client.received_audio

        async def read() -> None:
            while True:
                frame = await remote.recv()
                decoded.feed(time.perf_counter_ns(), frame.to_ndarray())

        reader = asyncio.create_task(read())
        prompt = str(fixtures_dir / "en_question.wav")
        span = detect_speech_span(prompt)
        clip = track.play_sound(encoded_sound(prompt), span.onset_s, span.offset_s)
        await decoded.wait(lambda: clip.offset_ns, 20)
        await decoded.wait_onset(clip.offset_ns, 15)
        await decoded.wait_quiet(800, 20)
        await light.wait_quiet(800, 5)
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await client.close()
    edges = [(a.onset_ns, b.onset_ns, a.offset_ns, b.offset_ns) for a, b in zip(decoded.segments, light.segments)]
    print("tap", tap.stats(), "decoded − rtp (ms):", [((a - b) / MS, ((c or 0) - (d or 0)) / MS) for a, b, c, d in edges])
    assert len(decoded.segments) == len(light.segments) >= 2  # greeting + reply
    # The same edges: the decoding path is later only by its decoder-thread hop (a few ms, more
    # on a loaded machine); the packet path is never a frame late (the encoder's fading tail
    # after a reply is decoded at the edge, not counted as sound by its size).
    for a, b, c, d in edges:
        assert c is not None and d is not None, edges
        assert -10 * MS < a - b < 60 * MS and -10 * MS < c - d < 60 * MS, edges
    assert tap.lost == 0 and tap.received > 100 and tap.decoded < tap.received / 2  # only edges decoded


def test_qa_preencoded_light_run(live_server: str, fixtures_dir: Path, tmp_path: Path) -> None:
    """One session, one turn, prompts pre-encoded and replies judged by packet size: a reply is
    heard and measured like the normal path (joined with the server's stages)."""
    out_json = tmp_path / "one.json"
    rc = qa_main(["--url", live_server, "--sessions", "1", "--turns", "1", "--light", "--prompt",
                  str(fixtures_dir / "en_question.wav"), "--scenario", "skincare-sensitive-en", "--quiet",
                  "--json", str(out_json), "--reply-timeout", "10"])
    run = json.loads(out_json.read_text())["runs"][0]
    assert rc == 0, run["session_results"]
    assert run["config"]["send"] == "opus" and run["config"]["receive"] == "rtp"
    (turn,), (session,) = run["turns"], run["session_results"]
    assert turn["error"] is None and session["error"] is None and session["greeting"], (turn, session)
    assert STT_S * 1000 + LLM_S * 1000 + TTS_S * 1000 < turn["latency_ms"] < 60_000, turn
    assert turn["server"] is not None and turn["latency_ms"] > turn["server_sum_ms"] > 0
    stages = turn["stages_ms"]
    assert sum(stages.values()) == pytest.approx(turn["latency_ms"], abs=1.0)
    assert stages["uplink"] > 0 and stages["transport"] > 0 and stages["llm"] >= LLM_S * 1000 * 0.9
    assert turn["frames"] > 50 and turn["holes"] == 0 and session["packets_lost"] == 0
    health = run["client_health"]
    assert health["procs"] == 1 and 0 < health["cpu_pct_per_session"] < 100 and health["loop_lag_p99_ms"] is not None


def test_qa_light_procs_run(live_server: str, fixtures_dir: Path, tmp_path: Path) -> None:
    """Pre-encoded prompts, packet-size replies, two client processes: replies heard and measured
    like the normal path, one merged run, the generator's CPU and lag reported."""
    out_json = tmp_path / "light.json"
    rc = qa_main(["--url", live_server, "--sessions", "2", "--procs", "2", "--turns", "1", "--prompt",
                  str(fixtures_dir / "en_question.wav"), "--scenario", "skincare-sensitive-en", "--quiet",
                  "--json", str(out_json), "--reply-timeout", "10"])
    run = json.loads(out_json.read_text())["runs"][0]
    assert rc == 0, run["session_results"]
    assert run["config"]["send"] == "opus" and run["config"]["receive"] == "rtp"
    assert run["concurrency"] == 2 and [s["session"] for s in run["session_results"]] == [0, 1]
    assert all(s["error"] is None and s["packets_lost"] == 0 for s in run["session_results"])
    for t in run["turns"]:
        assert t["error"] is None, t
        assert STT_S * 1000 + LLM_S * 1000 + TTS_S * 1000 < t["latency_ms"] < 60_000, t
        assert t["server"] is not None and t["latency_ms"] > t["server_sum_ms"] > 0
        assert sum(t["stages_ms"].values()) == pytest.approx(t["latency_ms"], abs=1.0)
    health = run["client_health"]
    assert health["procs"] == 2 and len(health["per_process"]) == 2 and not health["process_errors"]
    assert 0 < health["cpu_pct_per_session"] < 100 and health["loop_lag_p99_ms"] is not None


def test_merge_runs_and_cpu_lists() -> None:
    assert parse_cpus("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(ValueError):
        parse_cpus("3-1")
    part = {"concurrency": 1, "turns_per_session": 1, "started_at": 1.0, "duration_s": 2.0, "config": {},
            "clock": {}, "turns": [], "session_results": [],
            "client_health": {"cpu_s": 0.6, "wall_s": 60.0, "loop_lag_p99_ms": 2.0, "steady_cpu_pct_per_session": 0.4}}
    merged = merge_runs([part, {**part, "client_health": {**part["client_health"], "loop_lag_p99_ms": 5.0}}], 2, "r")
    h = merged["client_health"]
    assert h["cpu_pct_per_session"] == pytest.approx(1.0) and h["loop_lag_p99_ms"] == 5.0
    assert h["steady_cpu_pct_per_session"] == pytest.approx(0.4) and merged["concurrency"] == 2


# ---- the lean send path: one clock per process, packets straight to the DTLS transport ---------



def _lean_pair(track: LeanOpusTrack) -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """A sender peer with ``track`` on the lean clock, and a receive-only peer (not negotiated)."""
    a, b = (create_peer_connection(MediaSettings(ice_loopback_only=True)) for _ in range(2))
    a.addTransceiver(track, direction="sendonly")
    attach_lean_sender(a, track)
    b.addTransceiver("audio", direction="recvonly")
    return a, b


async def _negotiate(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)


async def test_lean_sender_sends_a_continuous_stream_aiortc_decodes() -> None:
    """Two real aiortc peers, two lean tracks on one clock: each stream arrives with continuous
    sequence numbers and timestamps, the mid extension, the sound's packets in order (the
    receiver decodes them: loud frames), the clip marks timed as the packets left, and RTCP
    sender reports that count them."""
    pcm = np.concatenate([np.zeros(9600, np.int16), np.tile(_tone(), 15), np.zeros(9600, np.int16)])
    sound = EncodedSound(pcm=pcm, packets=encode_opus(pcm))
    pairs: list[tuple[RTCPeerConnection, RTCPeerConnection]] = []
    tracks, arrivals, levels = [LeanOpusTrack(), LeanOpusTrack()], [[], []], [[], []]
    readers = []
    try:
        for k, track in enumerate(tracks):
            a, b = _lean_pair(track)
            pairs.append((a, b))
            receiver = b.getTransceivers()[0].receiver
            original = receiver._handle_rtp_packet

            async def handle(packet, arrival_time_ms, k=k, original=original):
                arrivals[k].append((packet.sequence_number, packet.timestamp, packet.extensions.mid, packet.payload,
                                    packet.ssrc, time.perf_counter_ns()))
                await original(packet, arrival_time_ms=arrival_time_ms)

            receiver._handle_rtp_packet = handle
            await _negotiate(a, b)
            remote = receiver.track

            async def read(remote=remote, k=k):
                while True:
                    levels[k].append(level_dbfs((await remote.recv()).to_ndarray()))

            readers.append(asyncio.create_task(read()))
        for _ in range(250):
            if all(len(x) >= 5 for x in arrivals):
                break
            await asyncio.sleep(0.02)
        clips = [t.play_sound(sound, onset_s=0.2, offset_s=0.5) for t in tracks]
        for _ in range(500):
            if all(t.idle for t in tracks) and all(len(x) > 80 for x in arrivals):
                break
            await asyncio.sleep(0.02)
        assert len(LeanClock.current(PHASES).streams) == 2
        assert sum(1 for phase in LeanClock.current(PHASES).phases if phase) == 2  # spread, not one burst
        # The sender's RTCP sender reports count what the lean clock sent (the receiver saw them).
        sent = [s for s in (await pairs[0][0].getSenders()[0].getStats()).values() if s.type == "outbound-rtp"]
        heard = [s for s in (await pairs[0][1].getReceivers()[0].getStats()).values()
                 if s.type == "remote-outbound-rtp"]
        assert sent[0].packetsSent >= len(arrivals[0]) and heard and 0 < heard[0].packetsSent <= sent[0].packetsSent
    finally:
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for a, b in pairs:
            await a.close()
            await b.close()
    for k, track in enumerate(tracks):
        got = arrivals[k]
        assert len(got) > 80
        seqs, stamps = [g[0] for g in got], [g[1] for g in got]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
        assert all((b - a) & 0xFFFFFFFF == 960 for a, b in zip(stamps, stamps[1:]))
        assert {g[2] for g in got} == {pairs[k][0].getTransceivers()[0].mid}
        assert {g[4] for g in got} == {pairs[k][0].getSenders()[0]._ssrc}
        payloads = [g[3] for g in got]
        first = payloads.index(sound.packets[10])  # the first loud packet
        assert payloads[first - 10 : first - 10 + len(sound.packets)] == list(sound.packets)
        clip = clips[k]
        assert clip.onset_ns is not None and clip.offset_ns is not None and clip.end_ns is not None
        assert got[first][5] - 20 * MS < clip.onset_ns <= got[first][5]  # sent just before it arrived
        assert sum(level > DEFAULT_ON_DBFS for level in levels[k]) >= 14  # the tone, decoded by aiortc
    for _ in range(50):  # closed peers leave the clock at its next tick
        if not LeanClock.current(PHASES).streams:
            break
        await asyncio.sleep(0.02)
    assert not LeanClock.current(PHASES).streams and all(t.readyState == "ended" for t in tracks)


def test_rtp_payload_cuts_what_aiortc_parses() -> None:
    ext = HeaderExtensionsMap()
    ext.configure(RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(
        id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid")]))
    for csrc, mid, padding in [([], None, 0), ([7, 8], "0", 0), ([], "audio-long-mid", 5)]:
        packet = RtpPacket(payload_type=111, sequence_number=9, ssrc=3, payload=b"opus" * 5)
        packet.csrc, packet.extensions.mid, packet.padding_size = csrc, mid, padding
        data = packet.serialize(ext)
        assert rtp_payload(data) == RtpPacket.parse(data, ext).payload == b"opus" * 5
    assert rtp_payload(b"\x80" * 8) is None and rtp_payload(b"\x40" + b"\x00" * 20) is None


async def test_rtp_tap_fast_path_takes_the_lean_stream() -> None:
    """A real lean stream into a light tap: past the first packet the tap reads the ICE
    connection directly; nothing lost or out of order, the tone seen once, after its onset."""
    pcm = np.concatenate([np.zeros(9600, np.int16), np.tile(_tone(), 25), np.zeros(19200, np.int16)])
    sound = EncodedSound(pcm=pcm, packets=encode_opus(pcm))
    track, mon = LeanOpusTrack(), ReceivedAudioMonitor()
    tap = RtpVoiceTap(mon, prefetch=2)
    a, b = _lean_pair(track)
    try:
        tap.attach_audio(b)
        await _negotiate(a, b)
        await mon.wait(lambda: tap.received >= 10 or None, 10)
        clip = track.play_sound(sound, onset_s=0.2)
        await mon.wait(lambda: clip.end_ns, 10)
        await mon.wait_quiet(200, 5)
    finally:
        await a.close()
        await b.close()
    assert tap.fast and tap.lost == 0 and tap.late == 0 and tap.received >= 10 + len(sound.packets)
    assert len(mon.segments) == 1 and clip.onset_ns is not None
    assert clip.onset_ns < mon.segments[0].onset_ns < clip.onset_ns + 500 * MS
