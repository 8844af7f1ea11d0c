"""One definition of a turn's stages (coach/turn_stages.py): the same turn gives the same numbers
in REST /turns, the Prometheus histograms, `livecoach qa --json` and what the session page gets."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp

from coach.contracts import TurnRecord
from coach.turn_stages import STAGE_NAMES, STAGES, definition, stage_ms, stage_ns, total_ms, total_ns
from qa.client import LivecoachClient
from qa.measure import ClockAlignment
from qa.results import SessionResult, TurnResult, join_server_turns
from server.app import STATE, make_app
from server.auth import issue_token
from server.settings import load_settings

SECRET = "turn-stages-test-secret"
T0 = 5_000_000_000


def _turn(session_id: str, turn: int, **missing: None) -> dict[str, Any]:
    fields = dict(user_speech_end_ns=T0, eot_decision_ns=T0 + 480_123_000, stt_final_ns=T0 + 700_456_000,
                  llm_first_token_ns=T0 + 910_000_500, tts_first_audio_ns=T0 + 1_002_000_000,
                  first_reply_frame_ns=T0 + 1_020_250_000)
    fields.update(missing)
    return TurnRecord(session_id=session_id, turn=turn, **fields).as_dict()


def test_a_missing_timestamp_folds_its_stage_into_the_next() -> None:
    turn = _turn("s", 1, stt_final_ns=None)
    stages = stage_ns(turn)
    assert list(stages) == list(STAGE_NAMES)
    assert stages["stt"] is None
    assert stages["llm"] == 910_000_500 - 480_123_000  # from the EOT decision: nothing is lost
    assert sum(v for v in stages.values() if v is not None) == total_ns(turn) == 1_020_250_000
    assert stage_ms(turn)["llm"] == round(429.8775, 3) and total_ms(turn) == 1020.25


def test_negative_or_absent_ends_are_unknown_not_zero() -> None:
    assert stage_ms({"user_speech_end_ns": 10, "eot_decision_ns": 5}) == {n: None for n in STAGE_NAMES}
    assert total_ms({"user_speech_end_ns": True, "first_reply_frame_ns": 10}) is None


def _histogram_sums(text: str) -> dict[str, float]:
    found = re.findall(r'^livecoach_turn_stage_seconds_sum\{stage="([a-z_]+)"\} ([0-9.e+-]+)$', text, re.M)
    return {name: float(value) * 1000 for name, value in found}


async def _turns_when_written(get: Any, session_id: str) -> list[dict[str, Any]]:
    """The event log is written by the room's writer task: give it a moment (generous bound)."""
    for _ in range(250):
        turns = [e for e in await get(f"/api/sessions/{session_id}/turns") if e["type"] == "turn"]
        if turns:
            return turns
        await asyncio.sleep(0.02)
    raise AssertionError("the turn never reached the event log")


async def test_same_turn_same_numbers_everywhere(aiohttp_server: Any, tmp_path: Path) -> None:
    app = make_app(load_settings(server={"secret": SECRET, "data_dir": str(tmp_path)},
                                 media={"ice_loopback_only": True}))
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    async with LivecoachClient(name="trainee") as trainee, aiohttp.ClientSession() as http:
        joined = await trainee.connect(base, issue_token(SECRET, "stages", "trainee", "ann", 60))
        session_id = joined["session_id"]
        record = _turn(session_id, 1)
        app[STATE].manager.rooms["stages"].emit(record)  # what the agent emits at a turn's end
        await trainee.wait_for("turn", timeout=5)

        async def get(path: str) -> Any:
            async with http.get(base + path) as resp:
                assert resp.status == 200, await resp.text()
                return await (resp.json() if resp.content_type == "application/json" else resp.text())

        expected = stage_ms(record)
        assert all(v is not None for v in expected.values())
        # REST /turns (waits for the event log writer)
        turns = await _turns_when_written(get, session_id)
        assert turns and turns[0]["stages_ms"] == expected and turns[0]["total_ms"] == total_ms(record)
        # Prometheus: one turn observed, so each stage's sum is that turn's stage (exact ns there;
        # the JSON numbers are the same at their µs precision)
        sums = _histogram_sums(await get("/metrics"))
        assert set(sums) == set(STAGE_NAMES)
        for name in STAGE_NAMES:
            assert abs(sums[name] - stage_ns(record)[name] / 1e6) < 1e-6, name  # type: ignore[operator]
            assert abs(sums[name] - expected[name]) <= 0.0005 + 1e-9, name  # type: ignore[operator]
        # What the session page gets: the definition (names in order) and /turns' stages_ms
        served = await get("/api/turn-stages")
        assert served == definition()
        assert [s["name"] for s in served["stages"]] == list(turns[0]["stages_ms"])
    # `livecoach qa --json`: the QA join of a client turn with this server record
    result = SessionResult(session=0, room="stages", user="ann")
    result.turns.append(TurnResult(session=0, turn=1, prompt="p.wav", speech_end_ns=T0 - 150_000_000,
                                   heard_ns=T0 + 1_100_000_000))
    join_server_turns([result], {0: turns}, ClockAlignment(offset_ns=0, rtt_ns=0, same_clock=True))
    qa_stages = result.turns[0].as_dict()["stages_ms"]
    assert {k: qa_stages[k] for k in STAGE_NAMES} == expected
    assert list(qa_stages) == ["uplink", *STAGE_NAMES, "transport"]


def test_the_session_page_does_not_spell_the_stages() -> None:
    page = (Path(__file__).resolve().parent.parent / "web_client" / "js" / "session.js").read_text()
    for stage in STAGES:
        assert f"'{stage.end_field}'" not in page and f"'{stage.name}'" not in page, stage.name
    assert "/api/turn-stages" in page and "stages_ms" in page
