"""Progress over sessions (scores per dimension, trend, before/after a training date) and CSV exports."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timezone
from statistics import mean
from typing import Any, Iterable

from coach.report import DIMENSIONS

SERIES = (*DIMENSIONS, "overall")


def _report_date(report: dict[str, Any]) -> str | None:
    if report.get("date"):
        return str(report["date"])[:10]
    if report.get("started_at") is not None:
        return datetime.fromtimestamp(float(report["started_at"]), timezone.utc).date().isoformat()
    return None


def _score(report: dict[str, Any], dim: str) -> float | None:
    if dim == "overall":
        return report.get("overall")
    return ((report.get("scores") or {}).get(dim) or {}).get("score")


def slope(values: list[float]) -> float | None:
    """Least-squares slope of ``values`` against their index (score points per session)."""
    n = len(values)
    if n < 2:
        return None
    x_bar, y_bar = (n - 1) / 2, mean(values)
    num = sum((i - x_bar) * (y - y_bar) for i, y in enumerate(values))
    den = sum((i - x_bar) ** 2 for i in range(n))
    return round(num / den, 3)


def progress(reports: list[dict[str, Any]], split_date: str | None = None) -> dict[str, Any]:
    """Per dimension: the series over sessions (oldest first), its trend, and the mean before
    and on/after ``split_date`` (ISO date, e.g. the day of a training) with the delta."""
    if split_date is not None:
        split_date = date.fromisoformat(split_date).isoformat()  # ValueError on a bad date
    ordered = sorted(reports, key=lambda r: (r.get("started_at") or 0, _report_date(r) or ""))
    out: dict[str, Any] = {"sessions": len(ordered), "split_date": split_date, "dimensions": {}}
    for dim in SERIES:
        series: list[dict[str, Any]] = [
            {"session_id": r.get("session_id"), "date": _report_date(r), "score": _score(r, dim)}
            for r in ordered
            if _score(r, dim) is not None
        ]
        scores: list[float] = [float(p["score"]) for p in series]
        entry: dict[str, Any] = {"series": series, "slope": slope(scores),
                                 "mean": round(mean(scores), 2) if scores else None}
        if split_date is not None:
            before = [float(p["score"]) for p in series if p["date"] and p["date"] < split_date]
            after = [float(p["score"]) for p in series if p["date"] and p["date"] >= split_date]
            b = round(mean(before), 2) if before else None
            a = round(mean(after), 2) if after else None
            entry.update(before_mean=b, after_mean=a, before_n=len(before), after_n=len(after),
                         delta=round(a - b, 2) if a is not None and b is not None else None)
        out["dimensions"][dim] = entry
    return out


# ---- CSV ------------------------------------------------------------------------------------

SESSION_COLUMNS = ("session_id", "user", "room", "kind", "scenario", "language", "started_at",
                   "ended_at", "duration_s", "overall")
METRIC_COLUMNS = (
    "session_id", "date", "user", "scenario", "language", "duration_s", "trainee_talk_s", "customer_talk_s",
    "talk_ratio", "speech_rate", "speech_rate_unit", "pause_count", "pause_mean_s", "pause_longest_s",
    "dead_air_count", "dead_air_total_s", "question_count", "unanswered_count", "response_time_mean_s",
    "filler_total", "filler_per_100_units", "keywords_used", "keywords_total", "objections_handled",
    "objections_total", "interruptions_made", "interruptions_suffered", "latency_p50_ms", "latency_max_ms",
    *(f"score_{d}" for d in SERIES),
)


def _cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text cells (CSV injection: =, +, -, @ prefixes)."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _iso(ts: Any) -> str:
    if ts is None or ts == "":
        return ""
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(float(ts), timezone.utc).isoformat(timespec="seconds")
    return str(ts)


def _write(columns: Iterable[str], rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buf.getvalue()


def sessions_csv(records: list[dict[str, Any]]) -> str:
    """One row per stored session record (store.list_sessions)."""
    rows = []
    for rec in records:
        row = {c: rec.get(c) for c in SESSION_COLUMNS}
        row["started_at"], row["ended_at"] = _iso(rec.get("started_at")), _iso(rec.get("ended_at"))
        if row["overall"] is None and isinstance(rec.get("report"), dict):
            row["overall"] = rec["report"].get("overall")
        rows.append(row)
    return _write(SESSION_COLUMNS, rows)


def metrics_csv(reports: list[dict[str, Any]]) -> str:
    """One row per report (build_report output): the headline metrics and scores."""
    rows = []
    for r in reports:
        m = r.get("metrics") or {}
        pauses, dead, kw = m.get("pauses") or {}, m.get("dead_air") or {}, m.get("keywords") or {}
        obj = m.get("objections") or {}
        row = {
            "session_id": r.get("session_id"), "date": _report_date(r), "user": r.get("user"),
            "scenario": r.get("scenario"), "language": r.get("language"),
            **{k: m.get(k) for k in ("duration_s", "trainee_talk_s", "customer_talk_s", "talk_ratio",
                                     "speech_rate", "speech_rate_unit", "question_count", "unanswered_count",
                                     "response_time_mean_s", "filler_total", "filler_per_100_units",
                                     "interruptions_made", "interruptions_suffered", "latency_p50_ms",
                                     "latency_max_ms")},
            "pause_count": pauses.get("count"), "pause_mean_s": pauses.get("mean_s"),
            "pause_longest_s": pauses.get("longest_s"), "dead_air_count": dead.get("count"),
            "dead_air_total_s": dead.get("total_s"), "keywords_used": len(kw.get("hits") or {}),
            "keywords_total": kw.get("total"), "objections_handled": len(obj.get("handled") or []),
            "objections_total": obj.get("total"),
            **{f"score_{d}": _score(r, d) for d in SERIES},
        }
        rows.append(row)
    return _write(METRIC_COLUMNS, rows)
