"""REST routes for reports, recordings, progress and exports.

A finished session's record carries the report built when it ended (server/practice.py); for
older or interrupted records the report is rebuilt from the stored event log on demand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from coach.progress import metrics_csv, progress, sessions_csv
from coach.report import build_report, render_report_html
from coach.scenarios import Scenario
from server.auth import ID_PATTERN
from server.practice import load_session_scenario, recordings_dir
from server.protocol import ProtocolError
from server.state import ApiError, json_error, session_or_404, state_of, store_of

MAX_PROGRESS_SESSIONS = 500


def _scenario_or_none(request: web.Request, scenario_id: str | None) -> Scenario | None:
    if not scenario_id:
        return None
    try:
        return load_session_scenario(state_of(request).settings, scenario_id)
    except ProtocolError:  # the scenario was removed since: report without it
        return None


async def _report(request: web.Request, record: dict[str, Any]) -> dict[str, Any]:
    report: dict[str, Any] | None = record.get("report")
    if report is None:
        events = await store_of(request).events(record["session_id"])
        scenario = _scenario_or_none(request, record.get("scenario"))
        report = await asyncio.get_running_loop().run_in_executor(
            None, build_report, record, events, scenario, state_of(request).settings.coach.alerts)
    if record.get("recording"):
        report = {**report, "recording_url": f"/api/sessions/{record['session_id']}/recording"}
    return report


async def session_report(request: web.Request) -> web.Response:
    return web.json_response(await _report(request, await session_or_404(request)))


async def session_report_html(request: web.Request) -> web.Response:
    report = await _report(request, await session_or_404(request))
    lang = request.query.get("lang")  # the page's language; default: the session's
    html = await asyncio.get_running_loop().run_in_executor(
        None, render_report_html, report, lang if lang in ("en", "zh") else None)
    return web.Response(text=html, content_type="text/html")


async def _serve_recording(request: web.Request, field: str, content_type: str) -> web.StreamResponse:
    record = await session_or_404(request)
    recordings = recordings_dir(state_of(request).settings).resolve()
    raw = record.get(field)
    # Records hold a file name (older ones an absolute path): only that name, inside our
    # recordings folder, is ever served, whatever a record says.
    path = (recordings / Path(str(raw)).name).resolve() if raw else None
    if path is None or path.parent != recordings or not path.is_file():
        return json_error(404, "not_found", "this session has no such recording")
    return web.FileResponse(path, headers={"Content-Type": content_type})


async def session_recording(request: web.Request) -> web.StreamResponse:
    return await _serve_recording(request, "recording", "audio/wav")


async def session_video(request: web.Request) -> web.StreamResponse:
    return await _serve_recording(request, "video_recording", "video/mp4")


async def session_av(request: web.Request) -> web.StreamResponse:
    """A shadowed stream's camera with both voices (muxed after the session: 404 until it is)."""
    return await _serve_recording(request, "av_recording", "video/mp4")


async def _reports_of(request: web.Request, user: str | None) -> list[dict[str, Any]]:
    records = await store_of(request).list_sessions(user=user, limit=MAX_PROGRESS_SESSIONS)
    return [
        {**r["report"], "started_at": r.get("started_at")}
        for r in records
        if r.get("report") is not None
    ]


async def trainee_progress(request: web.Request) -> web.Response:
    user = request.match_info["user"]
    if not ID_PATTERN.match(user):
        return json_error(400, "invalid_field", "bad user id")
    split = request.query.get("split") or None
    try:
        result = progress(await _reports_of(request, user), split)
    except ValueError:
        return json_error(400, "invalid_field", "split must be an ISO date, e.g. 2026-11-01")
    return web.json_response({"user": user, **result})


def _user_filter(request: web.Request) -> str | None:
    user = request.query.get("user") or None
    if user is not None and not ID_PATTERN.match(user):
        raise ApiError(400, "invalid_field", "bad user id")
    return user


async def export_sessions_csv(request: web.Request) -> web.Response:
    records = await store_of(request).list_sessions(user=_user_filter(request), limit=MAX_PROGRESS_SESSIONS)
    return web.Response(text=sessions_csv(records), content_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="sessions.csv"'})


async def export_metrics_csv(request: web.Request) -> web.Response:
    reports = await _reports_of(request, _user_filter(request))
    return web.Response(text=metrics_csv(reports), content_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="metrics.csv"'})


def add_report_routes(api: web.Application) -> None:
    """On the /api/ sub-app: paths are relative to /api."""
    api.router.add_get("/sessions/{session_id}/report", session_report)
    api.router.add_get("/sessions/{session_id}/report.html", session_report_html)
    api.router.add_get("/sessions/{session_id}/recording", session_recording)
    api.router.add_get("/sessions/{session_id}/video", session_video)
    api.router.add_get("/sessions/{session_id}/av", session_av)
    api.router.add_get("/trainees/{user}/progress", trainee_progress)
    api.router.add_get("/export/sessions.csv", export_sessions_csv)
    api.router.add_get("/export/metrics.csv", export_metrics_csv)
