"""Session reports (scores move the right way, timeline markers, HTML) and progress/CSV exports."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from coach.progress import metrics_csv, progress, sessions_csv, slope
from coach.report import build_report, latency_chart, render_report_html
from tests.test_analytics import SCENARIO, TEXT1, TEXT2, Log, good_session, ns

DAY = 86_400.0
WALL0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z


def session_record(events: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    start = events[0]
    return {"session_id": start["session_id"], "user": start["user"], "room": start["room"],
            "kind": start["kind"], "started_at": start["wall_s"], **extra}


def poor_session(wall_s: float = WALL0) -> list[dict[str, Any]]:
    """Slow answers, an unanswered question, fillers, no keywords, long pauses, dead air."""
    log = Log(wall_s=wall_s)
    log.customer(0.5, 2.5, "Hi, does this cream suit sensitive skin?", turn=0)
    log.speech(7.0, 9.0).speech(11.0, 14.0)
    log.said(7.0, 14.0, "Um, uh, like, it is, um, good, you know, like nice.", turn=1).turn(1, 14.0, 15.5)
    log.customer(15.5, 17.5, "How much is it today?", turn=1)
    log.customer(27.0, 28.0, "Are you still there?", turn=2)
    log.speech(33.0, 34.0).said(33.0, 34.0, "uh yes", turn=3).turn(3, 34.0, 35.0)
    log.interruption(1, 16.0).interruption(2, 27.5)
    return log.end(40.0)


def variant(text1: str = TEXT1, answer_at: float = 16.2, wall_s: float = WALL0) -> list[dict[str, Any]]:
    """good_session() with one thing changed."""
    log = Log(wall_s=wall_s)
    log.customer(0.5, 2.5, "Hi, does this cream suit sensitive skin?", turn=0)
    for a, b in [(3.0, 5.0), (5.5, 8.0), (8.2, 9.0), (10.5, 12.0)]:
        log.speech(a, b)
    log.said(3.0, 12.0, text1, turn=1).turn(1, 12.0, 12.9)
    log.customer(12.9, 15.0, "How much is it today?", turn=1)
    log.speech(answer_at, answer_at + 1.8).said(answer_at, answer_at + 1.8, TEXT2, turn=2)
    log.customer(answer_at + 2.6, answer_at + 3.8, "Okay, I will think about it.", turn=2)
    return log.end(answer_at + 10.8)


def scores(report: dict[str, Any]) -> dict[str, int | None]:
    return {d: v["score"] for d, v in report["scores"].items()} | {"overall": report["overall"]}


def test_report_contents_and_rationales() -> None:
    events = good_session()
    events.append({"type": "tip", "t_ns": ns(10.0), "text": "Mention the coupon", "from": "mentor1"})
    events.append({"type": "alert", "t_ns": ns(24.0), "kind": "dead_air", "severity": "warning",
                   "message": "冷场 4 秒 / Dead air: 4 s"})
    report = build_report(session_record(events, recording_url="/recordings/s1.wav"), events, SCENARIO)
    assert report["session_id"] == "s1" and report["user"] == "ann" and report["scenario"] == "cream-en"
    assert report["scenario_title"] == "Face cream" and report["date"] == "2024-05-01"
    assert report["metrics"]["trainee_talk_s"] == pytest.approx(8.6)
    assert report["latency"] == [{"turn": 1, "latency_ms": 900.0, "interrupted": False},
                                 {"turn": 2, "latency_ms": 800.0, "interrupted": False}]
    k, r, c = (report["scores"][d] for d in ("knowledge", "response", "composure"))
    assert k["rationale"] == "Covered 1/2 product facts, handled 1/1 objections, used 2/3 script keywords."
    assert k["score"] == round(100 * (0.5 + 1.0 + 2 / 3) / 3)  # 72
    assert "2/2" in r["rationale"] and "max 1.2 s" in r["rationale"] and "回答顾客问题 2/2" in r["rationale_zh"]
    assert "1 dead-air span (7.0 s)" in c["rationale"] and "1 interruption of" in c["rationale"]
    measured = [v["score"] for v in report["scores"].values()]
    assert report["overall"] == round(sum(measured) / 4)
    assert all(0 <= s <= 100 for s in measured)
    # Timeline: time-ordered, with markers and interleaved events.
    tl = report["timeline"]
    assert [it["t_s"] for it in tl] == sorted(it["t_s"] for it in tl)
    first_trainee = next(it for it in tl if it["kind"] == "line" and it["speaker"] == "trainee")
    assert [m["text"] for m in first_trainee["markers"] if m["kind"] == "keyword"] == ["fragrance-free", "patch test"]
    kinds = [(it["kind"], it["t_s"]) for it in tl if it["kind"] != "line"]
    assert kinds == [("pause", 9.0), ("tip", 10.0), ("interruption", 19.5), ("interruption", 19.7),
                     ("dead_air", 20.0), ("alert", 24.0)]  # the 0.5 s pause is not marked (< 1.5 s)
    last_customer = [it for it in tl if it["kind"] == "line" and it["speaker"] == "customer"][-1]
    assert {"kind": "interrupted", "text": "Okay, I will think about it."} in last_customer["markers"]
    assert report["tips"][0]["text"] == "Mention the coupon" and report["alerts"][0]["kind"] == "dead_air"


def test_better_session_scores_higher() -> None:
    good = scores(build_report(session_record(good_session()), good_session(), SCENARIO))
    poor_events = poor_session()
    poor = scores(build_report(session_record(poor_events), poor_events, SCENARIO))
    for dim in ("knowledge", "skill", "response", "composure", "overall"):
        assert good[dim] > poor[dim], (dim, good, poor)


def test_scores_move_on_the_right_dimension() -> None:
    base = scores(build_report(session_record(variant()), variant(), SCENARIO))
    # Fewer fillers: skill up; knowledge and response unchanged.
    clean_text = "Yes it is fragrance-free, and you can do a patch test first."
    clean = scores(build_report(session_record(variant(clean_text)), variant(clean_text), SCENARIO))
    assert clean["skill"] > base["skill"]
    assert clean["knowledge"] == base["knowledge"] and clean["response"] == base["response"]
    # A slower answer: response down; knowledge and skill unchanged.
    slow = scores(build_report(session_record(variant(answer_at=19.5)), variant(answer_at=19.5), SCENARIO))
    assert slow["response"] < base["response"]
    assert slow["knowledge"] == base["knowledge"] and slow["skill"] == base["skill"]


def test_unmeasurable_dimensions_are_none() -> None:
    log = Log()
    log.speech(1.0, 3.0).said(1.0, 3.0, "hello everyone welcome to the stream")
    events = log.end(4.0)
    report = build_report(session_record(events), events)  # no scenario, no customer
    assert report["scores"]["knowledge"]["score"] is None and report["scores"]["response"]["score"] is None
    assert report["scores"]["skill"]["score"] is not None and report["overall"] is not None
    html = render_report_html(report)
    assert 'id="score-knowledge">—<' in html and "No customer questions" in html


def test_html_renders_and_escapes() -> None:
    events = good_session()
    events.append({"type": "tip", "t_ns": ns(10.0), "text": "<b>coupon</b> & go", "from": "m<1>"})
    events.append({"type": "transcript", "speaker": "trainee", "final": True, "turn": 9,
                   "text": "<script>alert(1)</script>", "start_ns": ns(25.0), "end_ns": ns(26.0), "t_ns": ns(26.5)})
    record = session_record(events, user="<img src=x onerror=alert(1)>", recording_url="/recordings/s1.wav")
    report = build_report(record, events, SCENARIO)
    html = render_report_html(report)
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;coupon&lt;/b&gt; &amp; go" in html and "m&lt;1&gt;" in html
    assert f'id="score-overall">{report["overall"]}<' in html
    assert html.count('<rect class="bar') == 2 and "turn 1: 900 ms" in html
    assert '<a class="rec" href="/recordings/s1.wav">' in html
    assert "@media print" in html and "Overall" in html and "Transcript" in html
    assert "总分" not in html  # one language per page: the session's, or the one asked for
    zh = render_report_html(report, "zh")
    assert "总分" in zh and "对话记录" in zh and "Overall" not in zh
    assert html.count("/recordings/s1.wav") == 2  # the player and the link; print adds it once via CSS
    # A javascript: link is dropped even though autoescaping would keep it.
    report["recording_url"] = "javascript:alert(1)"
    assert "javascript:" not in render_report_html(report)
    report["recording_url"] = None
    assert 'class="rec"' not in render_report_html(report)


def test_latency_chart_geometry() -> None:
    chart = latency_chart([{"turn": 1, "latency_ms": 900.0}, {"turn": 2, "latency_ms": 450.0}])
    a, b = chart["bars"]
    assert chart["grid"][-1]["label"] == 1000  # axis rounds up to a readable maximum
    assert a["h"] == pytest.approx(2 * b["h"], abs=0.2) and a["y"] + a["h"] == pytest.approx(chart["base_y"])
    assert latency_chart([])["bars"] == []


# ---- progress -----------------------------------------------------------------------------


def fake_report(sid: str, day: int, k: int | None, s: int, r: int, c: int) -> dict[str, Any]:
    dims = {"knowledge": k, "skill": s, "response": r, "composure": c}
    measured = [v for v in dims.values() if v is not None]
    return {"session_id": sid, "started_at": WALL0 + day * DAY, "date": f"2024-05-{1 + day:02d}",
            "scores": {d: {"score": v} for d, v in dims.items()}, "overall": round(sum(measured) / len(measured))}


def test_progress_trend_and_before_after() -> None:
    reports = [fake_report("c", 14, 70, 65, 90, 70), fake_report("a", 0, 40, 50, 60, 70),
               fake_report("b", 7, 50, 60, 60, 70)]
    p = progress(reports, split_date="2024-05-08")
    k = p["dimensions"]["knowledge"]
    assert [pt["session_id"] for pt in k["series"]] == ["a", "b", "c"]
    assert [(pt["date"], pt["score"]) for pt in k["series"]] == [("2024-05-01", 40), ("2024-05-08", 50), ("2024-05-15", 70)]
    assert k["slope"] == pytest.approx(15.0)
    assert (k["before_mean"], k["after_mean"], k["delta"]) == (40, 60, 20)
    r = p["dimensions"]["response"]
    assert r["slope"] == pytest.approx(15.0) and r["delta"] == pytest.approx(15.0)
    assert p["dimensions"]["composure"]["slope"] == 0 and p["dimensions"]["composure"]["delta"] == 0
    assert p["dimensions"]["overall"]["slope"] > 0
    # A None score is skipped, not counted as zero.
    p2 = progress([fake_report("a", 0, 40, 50, 60, 70), fake_report("b", 7, None, 60, 60, 70)])
    assert [pt["score"] for pt in p2["dimensions"]["knowledge"]["series"]] == [40]
    assert p2["dimensions"]["knowledge"]["slope"] is None and "delta" not in p2["dimensions"]["knowledge"]
    with pytest.raises(ValueError):
        progress(reports, split_date="next tuesday")
    assert slope([1, 2, 3, 4]) == pytest.approx(1.0)


def test_progress_over_real_reports() -> None:
    """Three real sessions a week apart, improving: positive trend, after > before."""
    logs = [poor_session(WALL0), variant(answer_at=19.5, wall_s=WALL0 + 7 * DAY), good_session()]
    logs[2][0]["wall_s"] = WALL0 + 14 * DAY
    reports = [build_report(session_record(ev) | {"session_id": f"s{i}"}, ev, SCENARIO) for i, ev in enumerate(logs)]
    p = progress(reports, split_date="2024-05-08")
    for dim in ("response", "overall"):
        d = p["dimensions"][dim]
        assert d["slope"] > 0 and d["delta"] > 0, (dim, d)
        assert d["before_n"] == 1 and d["after_n"] == 2


def test_csv_exports() -> None:
    records = [
        {"session_id": "s1", "user": "=HYPERLINK(\"http://x\")", "room": "r1", "kind": "practice",
         "scenario": "cream-en", "started_at": WALL0, "ended_at": WALL0 + 27, "duration_s": 27.0},
        {"session_id": "s2", "user": "bob, \"the\" seller", "room": "r2", "kind": "shadow", "started_at": WALL0 + DAY},
    ]
    rows = list(csv.DictReader(io.StringIO(sessions_csv(records))))
    assert [r["session_id"] for r in rows] == ["s1", "s2"]
    assert rows[0]["user"] == "'=HYPERLINK(\"http://x\")" and rows[1]["user"] == "bob, \"the\" seller"
    assert rows[0]["started_at"] == "2024-05-01T00:00:00+00:00" and rows[1]["ended_at"] == ""
    events = good_session()
    report = build_report(session_record(events), events, SCENARIO)
    rows = list(csv.DictReader(io.StringIO(metrics_csv([report, report]))))
    assert len(rows) == 2
    row = rows[0]
    assert row["session_id"] == "s1" and row["date"] == "2024-05-01"
    assert float(row["trainee_talk_s"]) == pytest.approx(8.6) and float(row["speech_rate"]) == pytest.approx(167.4)
    assert row["pause_count"] == "2" and row["dead_air_count"] == "1" and row["keywords_used"] == "2"
    assert row["keywords_total"] == "3" and row["unanswered_count"] == "0"
    assert int(row["score_overall"]) == report["overall"]
    assert metrics_csv([]).strip().startswith("session_id,date,user")


def test_report_tolerates_odd_log_entries() -> None:
    events = good_session() + ["junk", {"type": "alert"}, {"type": "tip", "t_ns": None}]  # type: ignore[list-item]
    report = build_report(session_record(good_session()), events, SCENARIO)
    assert report["metrics"]["trainee_talk_s"] == pytest.approx(8.6) and report["alerts"] == []
    render_report_html(report)


def test_shadow_report_names_the_streamer_with_tips_whispers_and_stream_health() -> None:
    log = Log(kind="shadow")
    log.speech(0.0, 10.0).said(0.0, 10.0, "word " * 40)
    events = log.end(30.0)
    events += [
        {"type": "tip", "t_ns": ns(5.0), "tip_id": "t1", "text": "Slow down a little", "from": "coach-li"},
        {"type": "tip_ack", "t_ns": ns(6.0), "tip_id": "t1", "rtt_ms": 812.0},
        {"type": "whisper", "t_ns": ns(12.0), "on": True, "from": "coach-li"},
        {"type": "whisper", "t_ns": ns(14.5), "on": False, "from": "coach-li"},
        {"type": "alert", "t_ns": ns(9.0), "kind": "speech_rate_high", "severity": "info", "rate": 240.0,
         "threshold": 190.0, "unit": "wpm", "speaker": "streamer"},
    ] + [{"type": "stream_health", "t_ns": ns(t), "fps": 30.0 if t < 20 else 4.0, "width": 640, "height": 480,
          "loss_pct": 0.0, "freezes": 0 if t < 20 else 1, "fps_min": 15.0} for t in range(1, 30)]
    events.sort(key=lambda e: e["t_ns"])
    report = build_report({"session_id": "sh1", "user": "anna", "kind": "shadow"}, events)
    assert report["subject_role"] == "streamer" and report["metrics"]["talk_ratio"] is None
    kinds = [it["kind"] for it in report["timeline"]]
    assert "tip" in kinds and "whisper" in kinds and "alert" in kinds
    tip = next(it for it in report["timeline"] if it["kind"] == "tip")
    assert tip["ack_ms"] == 812.0 and tip["from"] == "coach-li"
    assert report["whispers"] == [{"kind": "whisper", "t_s": 12.0, "duration_s": 2.5, "from": "coach-li"}]
    alert = next(it for it in report["timeline"] if it["kind"] == "alert")
    assert alert["params"]["rate"] == 240.0 and "Speaking too fast: 240 wpm" in alert["text"]
    health = report["stream_health"]
    assert health["fps_min"] == 4.0 and health["freezes"] == 1 and health["resolution"] == "640×480"
    html = render_report_html(report, "en")
    assert "Streamer: <b>anna</b>" in html and "Trainee" not in html
    assert "Slow down a little" in html and "mentor whispered (coach-li) 2.5" in html and "Stream health" in html
    zh = render_report_html(report, "zh")
    assert "主播: <b>anna</b>" in zh and "导师耳语" in zh and "语速过快" in zh and "<polyline" in zh
