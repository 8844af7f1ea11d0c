"""Trainee ↔ AI customer end to end: a real aiortc client, the real server, real silero VAD.

Providers are either the fake OpenAI-compatible server (the only double: the network edge) driven
by the real ``openai`` client, or the offline default (espeak-ng + faster-whisper + scripted).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from qa.audio import WavFileTrack
from qa.client import ClientError, LivecoachClient
from qa.detect import ReceivedAudioMonitor
from server.app import make_app
from server.auth import issue_token
from server.practice import CoachHooks, recordings_dir
from server.settings import Settings, load_settings
from tests.fakes.openai_server import FakeOpenAI

QUESTION = "Hi, does this face cream suit sensitive skin?"
LONG_REPLY = (
    "Great question. This cream was made for sensitive skin, with no fragrance, no alcohol and no "
    "essential oils, and it was tested by dermatologists on people with reactive skin for four weeks."
)


def practice_settings(tmp_path: Path, base_url: str | None) -> Settings:
    settings = load_settings()
    settings.server.data_dir = str(tmp_path)
    settings.media.ice_loopback_only = True
    settings.coach.greet = False
    if base_url is not None:
        p = settings.coach.providers
        p.stt = p.llm = p.tts = "openai"
        p.openai.base_url = base_url
        p.openai.api_key = "test-key"
        p.openai.timeout_s = 1.5
        p.openai.max_retries = 0
    return settings


class Listener:
    """Drains the received track like a client's speaker would, timing energy on/off edges."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.detector = ReceivedAudioMonitor(on_dbfs=-45.0, hold_ms=120.0)
        self.frames = 0
        self._task = asyncio.create_task(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames += 1
                self.detector.feed_audio(frame, time.perf_counter_ns())
        except MediaStreamError:
            pass

    async def wait_onset(self, after_ns: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for t in self.detector.onsets if t > after_ns]
            if hits:
                return hits[0]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no reply audio within {timeout} s (onsets {self.detector.onsets})")

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Trainee:
    def __init__(self, client: LivecoachClient, mic: WavFileTrack, ear: Listener) -> None:
        self.client, self.mic, self.ear = client, mic, ear


async def join_practice(server: Any, settings: Settings, wav: Path, scenario: str = "skincare-sensitive-en",
                        user: str = "alice") -> Trainee:
    token = issue_token(settings.server.secret, f"room-{user}-{time.perf_counter_ns()}", "trainee", user, 600)
    client = LivecoachClient(settings.media, name=user)
    await client.connect(str(server.make_url("/")), token, scenario=scenario)
    mic = WavFileTrack(wav)
    await client.publish(audio=mic, recv_audio=True)
    assert client.received_audio is not None
    return Trainee(client, mic, Listener(client.received_audio))


@pytest.fixture
async def practice_server(aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[Any]:
    async def start(settings: Settings) -> Any:
        return await aiohttp_server(make_app(settings, hooks=CoachHooks(settings)))

    yield start


async def get_json(server: Any, path: str) -> Any:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.make_url(path)) as resp:
            assert resp.status == 200, (path, resp.status, await resp.text())
            return await resp.json()


async def finish(t: Trainee) -> str:
    sid = t.client.joined["session_id"]
    await t.ear.close()
    await t.client.leave()
    await t.client.wait_for("session_ended", timeout=10)
    await t.client.close()
    return sid


async def wait_record(server: Any, sid: str, timeout: float = 10.0) -> dict[str, Any]:
    """The record is final once the room has merged its end status into the report."""
    deadline = time.monotonic() + timeout
    while True:
        record = await get_json(server, f"/api/sessions/{sid}")
        if record.get("status") == "ended" and "report" in record:
            return record
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.1)


async def test_spoken_turn_reply_is_heard_and_logged_in_order(practice_server: Any, tmp_path: Path,
                                                              fixtures_dir: Path) -> None:
    async with FakeOpenAI(reply="Yes. It is fragrance free and gentle.", stt_text=QUESTION,
                          first_token_delay_s=0.05) as fake:
        settings = practice_settings(tmp_path, fake.base_url)
        server = await practice_server(settings)
        t = await join_practice(server, settings, fixtures_dir / "en_question.wav")
        turn = await t.client.wait_for("turn", timeout=20)
        heard_ns = await t.ear.wait_onset(turn["user_speech_end_ns"], timeout=10)
        stamps = [turn[k] for k in ("user_speech_start_ns", "user_speech_end_ns", "eot_decision_ns",
                                    "stt_final_ns", "llm_first_token_ns", "tts_first_audio_ns",
                                    "first_reply_frame_ns")]
        assert all(isinstance(s, int) for s in stamps), turn
        assert stamps == sorted(stamps), turn
        assert turn["user_text"] == QUESTION and turn["error"] is None
        assert turn["reply_played_text"] == "Yes. It is fragrance free and gentle."
        # The end-of-turn decision waits at least the short pause after the VAD end (the words,
        # "...?", then end the turn before the maximum silence).
        assert (turn["eot_decision_ns"] - turn["user_speech_end_ns"]) / 1e6 >= settings.coach.turn_taking.pause_ms - 40
        assert turn["speculative_calls"] >= 1
        # The client hears the reply after the server sent its first frame, within transport bounds.
        assert 0 < (heard_ns - turn["first_reply_frame_ns"]) / 1e6 < 1000
        # The speech offset of the fixture is 1.5 s before its end: VAD end lands near it.
        spoken_end_ns = t.mic.file_ends_ns[0] - int(1.5e9) if t.mic.file_ends_ns else None
        if spoken_end_ns is not None:
            assert abs(turn["user_speech_end_ns"] - spoken_end_ns) / 1e6 < 400
        await t.client.wait_for("transcript", lambda m: m.get("speaker") == "customer", timeout=10)
        sid = await finish(t)
        record = await wait_record(server, sid)
        turns = await get_json(server, f"/api/sessions/{sid}/turns")
    assert [e["type"] for e in turns] == ["turn"]
    assert turns[0]["user_text"] == QUESTION
    assert record["report"]["session_id"] == sid and record["scenario"] == "skincare-sensitive-en"
    assert record["recording"] == f"{sid}.wav"  # a name, never the server's folders
    assert (recordings_dir(settings) / record["recording"]).is_file()
    assert str(tmp_path) not in json.dumps(record)


async def test_barge_in_stops_reply_and_truncates_transcript(practice_server: Any, tmp_path: Path,
                                                             fixtures_dir: Path) -> None:
    async with FakeOpenAI(reply=LONG_REPLY, stt_text=QUESTION) as fake:
        settings = practice_settings(tmp_path, fake.base_url)
        server = await practice_server(settings)
        t = await join_practice(server, settings, fixtures_dir / "en_question.wav")
        await t.client.wait_for("state", lambda m: m["state"] == "speaking", timeout=20)
        reply_heard = await t.ear.wait_onset(0, timeout=10)
        await asyncio.sleep(1.0)  # the customer is mid-sentence (the reply lasts ~12 s)
        t.mic.play(fixtures_dir / "en_interrupt.wav")  # 1.0 s of silence, then "Wait, sorry..."
        cut = await t.client.wait_for("interruption", timeout=15)
        # The first energy offset after the reply began is where the customer went quiet.
        stopped_ns = min(o for o in t.ear.detector.offsets if o > reply_heard)
        customer = await t.client.wait_for("transcript", lambda m: m.get("speaker") == "customer", timeout=10)
        await finish(t)
    assert cut["false_interruption"] is False and cut["mode"] == "interrupt"
    assert cut["flushed_ms"] > 0
    # Heard stop: from the barge-in decision to the reply going quiet at the client (transport
    # included); it did not stop before the decision either.
    assert -50 < (stopped_ns - cut["decision_ns"]) / 1e6 < 600
    # The output stops at the first confident onset: once VAD confirmed speech (min_speech_ms).
    assert cut["decision_ns"] - cut["user_onset_ns"] >= settings.coach.vad.min_speech_ms * 1e6 - 40e6
    played, planned = cut["played_text"], cut["planned_text"]
    assert planned == LONG_REPLY and played and len(played) < len(planned)
    assert planned.startswith(played.rstrip(" .,"))
    assert customer["text"] == played


async def test_llm_failure_speaks_fallback_and_session_goes_on(practice_server: Any, tmp_path: Path,
                                                               fixtures_dir: Path) -> None:
    async with FakeOpenAI(stt_text=QUESTION, llm_mode="error") as fake:
        settings = practice_settings(tmp_path, fake.base_url)
        server = await practice_server(settings)
        t = await join_practice(server, settings, fixtures_dir / "en_question.wav")
        turn = await t.client.wait_for("turn", timeout=20)
        await t.ear.wait_onset(turn["user_speech_end_ns"], timeout=10)
        assert turn["error"] and "llm" in turn["error"]
        assert turn["reply_planned_text"] == settings.coach.providers.fallback_line["en"]
        fake.llm_mode = "hang"  # a timeout is a failure too
        t.mic.play(fixtures_dir / "en_price_returns.wav")
        second = await t.client.wait_for("turn", lambda m: m["turn"] != turn["turn"], timeout=25)
        assert second["error"] and "llm" in second["error"]
        assert (second["first_reply_frame_ns"] - second["eot_decision_ns"]) / 1e9 < settings.coach.providers.openai.timeout_s + 2
        await finish(t)


@pytest.mark.slow
async def test_offline_default_answers_an_english_question(practice_server: Any, tmp_path: Path,
                                                           fixtures_dir: Path) -> None:
    settings = practice_settings(tmp_path, None)  # espeak-ng + faster-whisper + scripted customer
    server = await practice_server(settings)
    t = await join_practice(server, settings, fixtures_dir / "en_question.wav")
    turn = await t.client.wait_for("turn", timeout=60)
    await t.ear.wait_onset(turn["user_speech_end_ns"], timeout=10)
    await finish(t)
    assert turn["error"] is None
    heard = turn["user_text"].lower()  # Opus + resampling: whisper may slur a word, not all of them
    assert "face cream" in heard and "sensitive" in heard, heard
    assert turn["reply_planned_text"].strip()
    assert turn["first_reply_frame_ns"] > turn["stt_final_ns"] >= turn["eot_decision_ns"]


async def test_chinese_scenario_end_to_end(practice_server: Any, tmp_path: Path, fixtures_dir: Path) -> None:
    reply = "这款面霜不含香精，敏感肌也可以用。建议先在耳后试用一下。"
    async with FakeOpenAI(reply=reply, stt_text="这款面霜适合敏感肌吗？") as fake:
        settings = practice_settings(tmp_path, fake.base_url)
        server = await practice_server(settings)
        t = await join_practice(server, settings, fixtures_dir / "zh_question.wav", scenario="skincare-sensitive-zh")
        turn = await t.client.wait_for("turn", timeout=20)
        await t.ear.wait_onset(turn["user_speech_end_ns"], timeout=10)
        sid = await finish(t)
        record = await wait_record(server, sid)
    assert turn["user_text"] == "这款面霜适合敏感肌吗？" and turn["error"] is None
    assert turn["reply_played_text"] == reply
    tts_inputs = [r.body["input"] for r in fake.paths("/audio/speech")]
    # Clause by clause (Chinese punctuation), the first clause spoken before the rest was synthesized.
    assert len(tts_inputs) >= 2 and "".join(tts_inputs) == reply
    chat = fake.paths("/chat/completions")[0].body
    assert any("\u4e00" <= ch <= "\u9fff" for ch in chat["messages"][0]["content"])  # zh persona prompt
    assert record["language"] == "zh" and record["report"]["metrics"]["language"] == "zh"


async def test_unknown_scenario_is_a_clear_error(practice_server: Any, tmp_path: Path, fixtures_dir: Path) -> None:
    settings = practice_settings(tmp_path, "http://127.0.0.1:9/v1")
    server = await practice_server(settings)
    token = issue_token(settings.server.secret, "room-x", "trainee", "zoe", 600)
    async with LivecoachClient(settings.media, name="zoe") as client:
        await client.connect(str(server.make_url("/")), token, scenario="no-such-scenario")
        with pytest.raises(ClientError) as err:
            await client.publish(audio=WavFileTrack(fixtures_dir / "en_question.wav"))
        assert err.value.reason == "unknown_scenario"
        assert "skincare-sensitive-en" in str(err.value)  # the known ids are listed
        assert await client.ping() > 0  # the socket and server keep serving
    health = await get_json(server, "/healthz")
    assert health["peers"] == 0
