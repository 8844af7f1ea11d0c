"""Session report: metrics, annotated timeline, per-dimension scores, printable HTML.

Scores are 0–100 per dimension (knowledge, skill, response, composure), each the mean of a few
components scaled linearly between a "good" and a "bad" figure, with one sentence (en + zh)
naming the figures. A dimension with nothing to measure is ``None`` (shown as "—") rather than a
made-up number; the overall score is the mean of the measured dimensions.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from statistics import mean
from typing import Any

import jinja2

from coach.alerts import alert_text, effective_alert_settings
from coach.analytics import (
    NS,
    SessionMetrics,
    Timeline,
    clean_events,
    compute_metrics,
    count_phrase,
    is_question,
    rate_stability,
    scenario_field,
    session_info,
    timeline,
)
from coach.report_i18n import labels
from coach.report_shadow import health_chart, stream_health, tip_acks, whisper_items
from coach.settings import AlertSettings

REPORT_VERSION = 1
DIMENSIONS = ("knowledge", "skill", "response", "composure")
LONG_PAUSE_S = 1.5  # pauses at least this long are marked and count against composure
TEMPLATES = Path(__file__).resolve().parent / "templates"


def lin(value: float, good: float, bad: float) -> float:
    """1.0 at ``good`` (or better), 0.0 at ``bad`` (or worse), linear in between."""
    if good == bad:
        return 1.0 if value == good else 0.0
    return min(1.0, max(0.0, (value - bad) / (good - bad)))


def _dimension(parts: list[float], en: str, zh: str, components: dict[str, Any]) -> dict[str, Any]:
    score = round(100 * mean(parts)) if parts else None
    return {"score": score, "rationale": en, "rationale_zh": zh, "components": components}


# ---- dimension scores ---------------------------------------------------------------------


def score_knowledge(m: SessionMetrics) -> dict[str, Any]:
    parts, en, zh, comp = [], [], [], {}
    if m.facts.total:
        comp["facts"] = len(m.facts.mentioned) / m.facts.total
        en.append(f"covered {len(m.facts.mentioned)}/{m.facts.total} product facts")
        zh.append(f"讲到产品卖点 {len(m.facts.mentioned)}/{m.facts.total}")
    if m.objections.total:
        # Judge the objections the customer actually raised; all of them if none was detected.
        pool = m.objections.raised or None
        handled = [o for o in m.objections.handled if pool is None or o in pool]
        denom = len(pool) if pool else m.objections.total
        comp["objections"] = len(handled) / denom
        en.append(f"handled {len(handled)}/{denom} objections")
        zh.append(f"化解顾客异议 {len(handled)}/{denom}")
    if m.keywords.total:
        comp["keywords"] = len(m.keywords.hits) / m.keywords.total
        en.append(f"used {len(m.keywords.hits)}/{m.keywords.total} script keywords")
        zh.append(f"使用话术关键词 {len(m.keywords.hits)}/{m.keywords.total}")
    parts = list(comp.values())
    if not parts:
        return _dimension([], "No scenario facts, objections or keywords to check.",
                          "本场景没有可检查的卖点、异议或关键词。", comp)
    return _dimension(parts, _sentence(en), "，".join(zh) + "。", comp)


def talk_ratio_score(ratio: float) -> float:
    """A seller should lead but let the customer talk: 45–75 % of the talk time is ideal."""
    if ratio < 0.45:
        return lin(ratio, 0.45, 0.15)
    return lin(ratio, 0.75, 0.95)


def score_skill(m: SessionMetrics) -> dict[str, Any]:
    en, zh, comp = [], [], {}
    if m.keywords.total:
        comp["keywords"] = len(m.keywords.hits) / m.keywords.total
        en.append(f"used {len(m.keywords.hits)}/{m.keywords.total} script keywords")
        zh.append(f"使用话术关键词 {len(m.keywords.hits)}/{m.keywords.total}")
    if m.filler_per_100_units is not None:
        comp["fillers"] = lin(m.filler_per_100_units, 2.0, 12.0)
        unit = "characters" if m.language == "zh" else "words"
        en.append(f"{m.filler_total} filler words ({m.filler_per_100_units:.1f} per 100 {unit})")
        zh_unit = "字" if m.language == "zh" else "词"
        zh.append(f"口头禅 {m.filler_total} 次（每百{zh_unit} {m.filler_per_100_units:.1f}）")
    if m.talk_ratio is not None:
        comp["talk_ratio"] = talk_ratio_score(m.talk_ratio)
        en.append(f"talked {m.talk_ratio:.0%} of the time")
        zh.append(f"说话时间占比 {m.talk_ratio:.0%}")
    if not comp:
        return _silent(m)
    return _dimension(list(comp.values()), _sentence(en), "，".join(zh) + "。", comp)


def score_response(m: SessionMetrics) -> dict[str, Any]:
    if not m.question_count:
        return _dimension([], "No customer questions were detected.", "未检测到顾客提问。", {})
    answered = m.question_count - m.unanswered_count
    comp: dict[str, float] = {"answered": answered / m.question_count}
    en = f"Answered {answered}/{m.question_count} customer questions"
    zh = f"回答顾客问题 {answered}/{m.question_count}"
    if m.response_time_mean_s is not None:
        comp["response_time"] = lin(m.response_time_mean_s, 1.5, 6.0)
        en += f", mean response {m.response_time_mean_s:.1f} s (max {m.response_time_max_s:.1f} s)"
        zh += f"，平均响应 {m.response_time_mean_s:.1f} 秒（最长 {m.response_time_max_s:.1f} 秒）"
    return _dimension(list(comp.values()), en + ".", zh + "。", comp)


def score_composure(m: SessionMetrics, alerts: AlertSettings) -> dict[str, Any]:
    if not m.trainee_talk_s:
        return _silent(m)
    comp: dict[str, float] = {}
    en, zh = [], []
    lo, hi = alerts.speech_rate_min.get(m.language), alerts.speech_rate_max.get(m.language)
    if m.speech_rate is not None and lo and hi:
        # Distance outside the range as a share of the nearest limit; 40 % out scores 0.
        off = max(lo - m.speech_rate, m.speech_rate - hi, 0) / (lo if m.speech_rate < lo else hi)
        comp["rate_in_range"] = lin(off, 0.0, 0.4)
        en.append(f"rate {m.speech_rate:.0f} {m.speech_rate_unit} (target {lo:.0f}–{hi:.0f})")
        zh.append(f"语速 {m.speech_rate:.0f}/分钟（目标 {lo:.0f}–{hi:.0f}）")
    cv = rate_stability(m.utterance_rates)
    if cv is not None:
        comp["rate_stability"] = lin(cv, 0.15, 0.6)
        en.append(f"rate variation {cv:.0%}")
        zh.append(f"语速波动 {cv:.0%}")
    long_pauses = [s for s in m.pauses.spans if s.duration_s >= LONG_PAUSE_S]
    # Per minute of talk, but at least one minute so one pause in a short session is not fatal.
    per_min = len(long_pauses) / max(m.trainee_talk_s / 60, 1.0)
    comp["pauses"] = lin(per_min, 0.5, 4.0)
    longest = f" (longest {m.pauses.longest_s:.1f} s)" if m.pauses.longest_s else ""
    en.append(f"{_n(len(long_pauses), 'long pause')}{longest}")
    zh.append(f"长停顿 {len(long_pauses)} 次" + (f"（最长 {m.pauses.longest_s:.1f} 秒）" if m.pauses.longest_s else ""))
    comp["dead_air"] = lin(m.dead_air.count, 0, 4)
    en.append(f"{_n(m.dead_air.count, 'dead-air span')} ({m.dead_air.total_s:.1f} s)")
    zh.append(f"冷场 {m.dead_air.count} 次（共 {m.dead_air.total_s:.1f} 秒）")
    comp["interruptions"] = lin(m.interruptions_made, 0, 4)
    en.append(f"{_n(m.interruptions_made, 'interruption')} of the customer")
    zh.append(f"打断顾客 {m.interruptions_made} 次")
    return _dimension(list(comp.values()), _sentence(en), "，".join(zh) + "。", comp)


def _silent(m: SessionMetrics) -> dict[str, Any]:
    if m.speaker == "streamer":
        return _dimension([], "The streamer did not speak.", "主播没有发言。", {})
    return _dimension([], "The trainee did not speak.", "学员没有发言。", {})


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _sentence(parts: list[str]) -> str:
    text = ", ".join(parts)
    return text[:1].upper() + text[1:] + "."


# ---- timeline -------------------------------------------------------------------------------


def build_timeline(events: list[dict[str, Any]], m: SessionMetrics, keywords: list[str]) -> list[dict[str, Any]]:
    """Transcript lines with markers, interleaved with interruptions, long pauses, dead air,
    alerts and tips, in time order (seconds from the session start)."""
    tl = timeline(events)
    interrupted_turns = {ev.get("turn") for ev in events
                         if ev.get("type") == "interruption" and not ev.get("false_interruption")}
    unanswered = {q.t_s for q in m.questions if q.response_s is None}
    acks = tip_acks(events)
    items: list[dict[str, Any]] = whisper_items(events, tl)
    for ev in events:
        kind = ev.get("type")
        if kind == "transcript" and ev.get("final", True) and ev.get("text"):
            items.append(_line(ev, tl, m.speaker, keywords, interrupted_turns, unanswered))
        elif kind == "interruption":
            false_ = bool(ev.get("false_interruption"))
            items.append({"kind": "interruption", "t_s": tl.s(int(ev.get("user_onset_ns") or ev["t_ns"])),
                          "turn": ev.get("turn"), "false_interruption": false_,
                          "flushed_ms": ev.get("flushed_ms"), "text": ev.get("played_text", "")})
        elif kind == "alert":
            params = {k: v for k, v in ev.items() if k not in ("type", "kind", "t_ns", "session_id")}
            items.append({"kind": "alert", "t_s": tl.s(int(ev["t_ns"])), "alert_kind": ev.get("kind"),
                          "text": alert_text(ev, m.language), "severity": ev.get("severity"), "params": params})
        elif kind == "tip":
            items.append({"kind": "tip", "t_s": tl.s(int(ev["t_ns"])), "text": ev.get("text") or "",
                          "from": ev.get("from"), "tip_id": ev.get("tip_id"), "ack_ms": acks.get(ev.get("tip_id"))})
    for span in m.pauses.spans:
        if span.duration_s >= LONG_PAUSE_S:
            items.append({"kind": "pause", "t_s": span.start_s, "duration_s": round(span.duration_s, 3)})
    for span in m.dead_air.spans:
        items.append({"kind": "dead_air", "t_s": span.start_s, "duration_s": round(span.duration_s, 3)})
    return sorted(items, key=lambda it: it["t_s"])


def _line(ev: dict[str, Any], tl: Timeline, coached: str, keywords: list[str], interrupted_turns: set[Any],
          unanswered: set[float]) -> dict[str, Any]:
    text = str(ev.get("text"))
    end = int(ev.get("end_ns") or ev["t_ns"])
    start = int(ev.get("start_ns") or end)
    markers: list[dict[str, Any]] = []
    if ev.get("speaker") == coached:
        markers += [{"kind": "keyword", "text": kw} for kw in keywords if count_phrase(text, kw)]
    if ev.get("speaker") in ("customer", "viewer"):
        if ev.get("interrupted") or ev.get("turn") in interrupted_turns:
            markers.append({"kind": "interrupted", "text": str(ev.get("planned") or "")})
        if is_question(text):
            markers.append({"kind": "unanswered" if tl.s(end) in unanswered else "question"})
    return {"kind": "line", "t_s": tl.s(start), "end_s": tl.s(end), "speaker": ev.get("speaker"),
            "text": text, "turn": ev.get("turn"), "markers": markers}


# ---- the report -----------------------------------------------------------------------------


def _started_at(session: dict[str, Any], events: list[dict[str, Any]]) -> float | None:
    if session.get("started_at") is not None:
        return float(session["started_at"])
    wall = session_info(events).get("wall_s")
    return float(wall) if isinstance(wall, (int, float)) else None


def _title(scenario: Any, language: str) -> str | None:
    title = scenario_field(scenario, "title")
    if isinstance(title, dict):
        return title.get(language) or next(iter(title.values()), None)
    return title


def build_report(
    session: dict[str, Any],
    events: list[dict[str, Any]],
    scenario: Any = None,
    alert_settings: AlertSettings | None = None,
) -> dict[str, Any]:
    """JSON-able report of one session (``session`` is the store's session record)."""
    events = clean_events(events)
    alerts = effective_alert_settings(alert_settings or AlertSettings(), scenario)
    m = compute_metrics(events, scenario, session.get("language"), dead_air_s=alerts.dead_air_s)
    scores = {
        "knowledge": score_knowledge(m),
        "skill": score_skill(m),
        "response": score_response(m),
        "composure": score_composure(m, alerts),
    }
    measured = [d["score"] for d in scores.values() if d["score"] is not None]
    started = _started_at(session, events)
    started_dt = datetime.fromtimestamp(started, timezone.utc) if started is not None else None
    info = session_info(events)
    keywords = list(scenario_field(scenario, "script_keywords", []) or [])
    return {
        "version": REPORT_VERSION,
        "session_id": session.get("session_id") or info.get("session_id"),
        "user": session.get("user") or info.get("user"),
        "room": session.get("room") or info.get("room"),
        "kind": session.get("kind") or info.get("kind"),
        "scenario": scenario_field(scenario, "id") or session.get("scenario") or info.get("scenario"),
        "scenario_title": _title(scenario, m.language),
        "language": m.language,
        "started_at": started,
        "started_at_iso": started_dt.isoformat(timespec="seconds") if started_dt else None,
        "date": started_dt.date().isoformat() if started_dt else None,
        "duration_s": m.duration_s,
        "metrics": m.model_dump(),
        "scores": scores,
        "overall": round(mean(measured)) if measured else None,
        "timeline": build_timeline(events, m, keywords),
        "latency": [t.model_dump() for t in m.latency],
        "alerts": [_public(ev) for ev in events if ev.get("type") == "alert"],
        "tips": [_public(ev) for ev in events if ev.get("type") == "tip"],
        "whispers": whisper_items(events, timeline(events)),
        "subject_role": m.speaker,  # whom the report is about: "trainee" or "streamer"
        "stream_health": stream_health(events, timeline(events)),
        "recording_url": session.get("recording_url"),
        "video_url": session.get("video_url"),
    }


def _public(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in ev.items() if k != "type"}


# ---- HTML -----------------------------------------------------------------------------------

_env: jinja2.Environment | None = None


def _environment() -> jinja2.Environment:
    global _env
    if _env is None:
        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=True,  # transcripts and names are user input
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    return _env


def latency_chart(latency: list[dict[str, Any]], width: int = 640, height: int = 180) -> dict[str, Any]:
    """Bar geometry for the inline SVG (computed here so the template stays dumb)."""
    pad_l, pad_b, pad_t = 44, 22, 10
    values = [float(t["latency_ms"]) for t in latency]
    top = max(values + [1.0])
    scale_max = next((s for s in (250, 500, 1000, 1500, 2000, 3000, 5000, 10000) if s >= top), top)
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    slot = plot_w / max(len(values), 1)
    bars = []
    for i, (t, v) in enumerate(zip(latency, values)):
        h = plot_h * min(v, scale_max) / scale_max
        bars.append({"x": round(pad_l + i * slot + slot * 0.15, 1), "w": round(slot * 0.7, 1),
                     "y": round(pad_t + plot_h - h, 1), "h": round(h, 1), "ms": round(v),
                     "turn": t.get("turn"), "interrupted": bool(t.get("interrupted"))})
    grid = [{"y": round(pad_t + plot_h - plot_h * f, 1), "label": round(scale_max * f)} for f in (0, 0.5, 1)]
    return {"width": width, "height": height, "bars": bars, "grid": grid, "x0": pad_l,
            "x1": width - 8, "base_y": pad_t + plot_h}


def safe_url(url: Any) -> str | None:
    """Only http(s) or same-site links: autoescaping does not stop javascript: URLs."""
    if not isinstance(url, str):
        return None
    if url.startswith(("https://", "http://")) or (url.startswith("/") and not url.startswith("//")):
        return url
    return None


def render_report_html(report: dict[str, Any], language: str | None = None) -> str:
    """Printable, self-contained HTML page of a report from ``build_report``, in one language
    (``language``, else the session's)."""
    lang = "zh" if str(language or report.get("language") or "en").startswith("zh") else "en"
    template = _environment().get_template("report.html")
    return template.render(
        r=report,
        lang=lang,
        L=labels(lang),
        word_alert=lambda it: alert_text({**(it.get("params") or {}), "kind": it.get("alert_kind")}, lang),
        health=health_chart(report.get("stream_health")),
        m=report["metrics"],
        dims=DIMENSIONS,
        chart=latency_chart(report.get("latency") or []),
        recording_url=safe_url(report.get("recording_url")),
        ns=NS,
    )
