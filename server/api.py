"""REST routes: health, metrics, clock, dev tokens, scenarios, session records, presence, static."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from coach.scenarios import load_scenarios
from server.app import STATE, AppState
from server.auth import ID_PATTERN, ROLES, issue_token, validate_identity
from server.metrics import CONTENT_TYPE
from server.signalling import ws_handler

log = logging.getLogger(__name__)

TURN_EVENT_TYPES = ["turn", "interruption"]
MAX_DEV_TTL_S = 24 * 3600


def _error(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": reason, "message": message}, status=status)


def _state(request: web.Request) -> AppState:
    return request.app[STATE]


def _store(request: web.Request) -> Any:
    store = _state(request).store
    if store is None:
        raise web.HTTPServiceUnavailable(
            text='{"error":"starting","message":"store not open yet"}', content_type="application/json"
        )
    return store


def _session_id(request: web.Request) -> str:
    sid = request.match_info["session_id"]
    if not ID_PATTERN.match(sid):
        raise web.HTTPNotFound(text='{"error":"not_found","message":"no such session"}',
                               content_type="application/json")
    return sid


async def healthz(request: web.Request) -> web.Response:
    state = _state(request)
    manager = state.manager
    return web.json_response({
        "ok": state.store is not None and not state.closing,
        "process_id": state.process_id,
        "rooms": len(manager.rooms) if manager else 0,
        "peers": manager.peer_count if manager else 0,
        "sessions": manager.session_count if manager else 0,
        "connections": len(state.router.local) if state.router else 0,
        "store": state.store_kind,
    })


async def metrics(request: web.Request) -> web.Response:
    body = _state(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def clock(request: web.Request) -> web.Response:
    # perf_ns is CLOCK_MONOTONIC: same-machine QA clients compare it with their own.
    return web.json_response({"perf_ns": time.perf_counter_ns(), "wall_ns": time.time_ns()})


async def dev_token(request: web.Request) -> web.Response:
    settings = _state(request).settings
    if not settings.server.dev_tokens:
        return _error(404, "not_found", "dev tokens are disabled")
    try:
        body = await request.json()
    except Exception:  # noqa: BLE001 - any parse failure is the client's
        return _error(400, "bad_json", "body must be JSON {room, role, user, ttl_s?}")
    if not isinstance(body, dict):
        return _error(400, "not_object", "body must be a JSON object")
    unknown = set(body) - {"room", "role", "user", "ttl_s"}
    if unknown:
        return _error(400, "invalid_field", f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    room, role, user = body.get("room"), body.get("role"), body.get("user")
    ttl = body.get("ttl_s", settings.server.token_ttl_s)
    try:
        validate_identity(room, role, user)  # type: ignore[arg-type]
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_DEV_TTL_S:
            raise ValueError(f"ttl_s must be a number in (0, {MAX_DEV_TTL_S}]")
    except ValueError as exc:
        return _error(400, "invalid_field", str(exc))
    token = issue_token(settings.server.secret, room, role, user, float(ttl))  # type: ignore[arg-type]
    return web.json_response({"token": token, "room": room, "role": role, "user": user, "ttl_s": ttl,
                              "roles": list(ROLES)})


async def scenarios(request: web.Request) -> web.Response:
    settings = _state(request).settings
    try:
        found = load_scenarios(settings.coach.scenarios_dir)
    except Exception as exc:  # noqa: BLE001 - a broken YAML must not break the page
        log.warning("loading scenarios failed: %s", exc)
        return _error(500, "scenarios_invalid", str(exc)[:300])
    out = []
    for sid, scenario in found.items():
        summary = scenario.summary() if hasattr(scenario, "summary") else scenario.model_dump(mode="json")
        out.append({"id": sid, **summary})
    return web.json_response(out)


async def list_sessions(request: web.Request) -> web.Response:
    user = request.query.get("user")
    if user is not None and not ID_PATTERN.match(user):
        return _error(400, "invalid_field", "bad user id")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return _error(400, "invalid_field", "limit must be an integer")
    limit = max(1, min(limit, 1000))
    return web.json_response(await _store(request).list_sessions(user=user, limit=limit))


async def get_session(request: web.Request) -> web.Response:
    record = await _store(request).get_session(_session_id(request))
    if record is None:
        return _error(404, "not_found", "no such session")
    return web.json_response(record)


async def _events_or_404(request: web.Request, types: list[str] | None) -> web.Response:
    sid = _session_id(request)
    store = _store(request)
    events = await store.events(sid, types)
    if not events and await store.get_session(sid) is None:
        return _error(404, "not_found", "no such session")
    return web.json_response(events)


async def session_events(request: web.Request) -> web.Response:
    raw = request.query.get("type")
    types = [t for t in raw.split(",") if t] if raw else None
    return await _events_or_404(request, types)


async def session_turns(request: web.Request) -> web.Response:
    return await _events_or_404(request, TURN_EVENT_TYPES)


async def room_presence(request: web.Request) -> web.Response:
    room_id = request.match_info["room_id"]
    if not ID_PATTERN.match(room_id):
        return _error(404, "not_found", "no such room")
    store = _store(request)
    owner = await store.room_owner(room_id)
    present = await store.presence(room_id)
    if owner is None and not present:
        return _error(404, "not_found", "no such room")
    return web.json_response({"room": room_id, "owner": owner, "participants": present})


async def index(request: web.Request) -> web.StreamResponse:
    page = Path(_state(request).settings.server.static_dir) / "index.html"
    if not page.is_file():
        return _error(404, "not_found", "web client not installed")
    return web.FileResponse(page)


def add_routes(app: web.Application) -> None:
    settings = app[STATE].settings
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/clock", clock)
    app.router.add_post("/api/dev/token", dev_token)
    app.router.add_get("/api/scenarios", scenarios)
    app.router.add_get("/api/sessions", list_sessions)
    app.router.add_get("/api/sessions/{session_id}", get_session)
    app.router.add_get("/api/sessions/{session_id}/events", session_events)
    app.router.add_get("/api/sessions/{session_id}/turns", session_turns)
    app.router.add_get("/api/rooms/{room_id}", room_presence)
    app.router.add_get("/", index)
    static = Path(settings.server.static_dir)
    if static.is_dir():
        app.router.add_static("/static/", static, follow_symlinks=False)
