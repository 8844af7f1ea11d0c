"""HTTP routes. Root app: /ws, /healthz, /metrics, the page and static files. REST: a sub-app at
/api/ with its own middlewares (JSON errors, then auth); report routes come from api_reports."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from coach.scenarios import load_scenarios
from coach.turn_stages import definition as turn_stage_definition
from coach.turn_stages import with_stages
from server.api_auth import make_api_auth, reader_claims
from server.api_reports import add_report_routes
from server.auth import ID_PATTERN, ROLES, issue_token, validate_identity
from server.metrics import CONTENT_TYPE
from server.metrics_cluster import sum_expositions
from server.security import make_rest_rate_limit
from server.signalling import ws_handler
from server.state import (
    STATE,
    error_middleware,
    json_error,
    session_id_of,
    state_of,
    store_of,
)

log = logging.getLogger(__name__)

TURN_EVENT_TYPES = ["turn", "interruption"]
MAX_DEV_TTL_S = 24 * 3600


async def healthz(request: web.Request) -> web.Response:
    """``ok`` and ``status`` for anyone (a load balancer); what is alive on this process (rooms,
    peers, agents, threads, tasks, fds, its id) only in dev mode or for a mentor/QA token."""
    state = state_of(request)
    services = state.services
    store_ok = await services.store.healthy() if services else False
    status = "starting" if services is None else "stopping" if state.closing else "ok" if store_ok else "degraded"
    body: dict[str, Any] = {"ok": status == "ok", "status": status, "store_ok": store_ok}
    if state.settings.server.dev_tokens or reader_claims(request, state.settings.server.secret) is not None:
        manager = services.manager if services else None
        body.update({
            "process_id": state.process_id,
            "pid": os.getpid(),  # which worker answered, with `serve --workers N`
            "rooms": len(manager.rooms) if manager else 0,
            "peers": manager.peer_count if manager else 0,
            "sessions": manager.session_count if manager else 0,
            "agents": state.hooks.live_sessions,
            "connections": len(services.outbox.local) if services else 0,
            "store": services.store_kind if services else "none",
            "threads": threading.active_count(),
            "thread_kinds": thread_kinds(),
            "tasks": len(asyncio.all_tasks()),
            "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],  # asyncio | uvloop
            "fds": open_fd_count(),
            "loop_lag_ms": round(state.load.load.loop_lag_ms, 1),
            "cpu_pct": round(state.load.load.cpu_pct, 1),
        })
    return web.json_response(body, status=200 if status in ("ok", "degraded") else 503)


def thread_kinds() -> dict[str, int]:
    """Live threads by name, numbers stripped ("ThreadPoolExecutor-0_3" -> "ThreadPoolExecutor-_")."""
    return dict(Counter(re.sub(r"\d+", "", t.name) for t in threading.enumerate()))


def open_fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return -1


async def metrics(request: web.Request) -> web.Response:
    """This process's metrics; ``?scope=cluster``: every live worker's, summed (with --workers N)."""
    state = state_of(request)
    scope = request.query.get("scope", "process")
    if scope == "process":
        body = state.metrics.render()
    elif scope == "cluster":
        if state.services is None:
            raise web.HTTPServiceUnavailable(text="the server is starting or stopping")
        try:
            snapshots = await state.services.store.process_metrics()
        except Exception as exc:  # noqa: BLE001 - the store is down: say so, do not fall back silently
            raise web.HTTPServiceUnavailable(text=f"cluster metrics unavailable: {exc}") from None
        snapshots[state.process_id] = state.metrics.render().decode()  # ours, fresh
        body = sum_expositions(snapshots.values()).encode()
    else:
        raise web.HTTPBadRequest(text="scope must be 'process' or 'cluster'")
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def clock(request: web.Request) -> web.Response:
    # perf_ns is CLOCK_MONOTONIC: same-machine QA clients compare it with their own.
    return web.json_response({"perf_ns": time.perf_counter_ns(), "wall_ns": time.time_ns()})


async def dev_token(request: web.Request) -> web.Response:
    settings = state_of(request).settings
    if not settings.server.dev_tokens:
        return json_error(404, "not_found", "dev tokens are disabled")
    try:
        body = await request.json()
    except Exception:  # noqa: BLE001 - any parse failure is the client's
        return json_error(400, "bad_json", "body must be JSON {room, role, user, ttl_s?}")
    if not isinstance(body, dict):
        return json_error(400, "not_object", "body must be a JSON object")
    unknown = set(body) - {"room", "role", "user", "ttl_s"}
    if unknown:
        return json_error(400, "invalid_field", f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    room, role, user = body.get("room"), body.get("role"), body.get("user")
    ttl = body.get("ttl_s", settings.server.token_ttl_s)
    try:
        validate_identity(room, role, user)  # type: ignore[arg-type]
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_DEV_TTL_S:
            raise ValueError(f"ttl_s must be a number in (0, {MAX_DEV_TTL_S}]")
    except ValueError as exc:
        return json_error(400, "invalid_field", str(exc))
    token = issue_token(settings.server.secret, room, role, user, float(ttl))  # type: ignore[arg-type]
    return web.json_response({"token": token, "room": room, "role": role, "user": user, "ttl_s": ttl,
                              "roles": list(ROLES)})


async def scenarios(request: web.Request) -> web.Response:
    settings = state_of(request).settings
    try:
        found = load_scenarios(settings.coach.scenarios_dir)
    except Exception as exc:  # noqa: BLE001 - a broken YAML must not break the page
        log.warning("loading scenarios failed: %s", exc)
        return json_error(500, "scenarios_invalid", str(exc)[:300])
    out = []
    for sid, scenario in found.items():
        summary = scenario.summary() if hasattr(scenario, "summary") else scenario.model_dump(mode="json")
        out.append({"id": sid, **summary})
    return web.json_response(out)


async def list_sessions(request: web.Request) -> web.Response:
    user = request.query.get("user")
    if user is not None and not ID_PATTERN.match(user):
        return json_error(400, "invalid_field", "bad user id")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        return json_error(400, "invalid_field", "limit must be an integer")
    limit = max(1, min(limit, 1000))
    return web.json_response(await store_of(request).list_sessions(user=user, limit=limit))


async def get_session(request: web.Request) -> web.Response:
    record = await store_of(request).get_session(session_id_of(request))
    if record is None:
        return json_error(404, "not_found", "no such session")
    return web.json_response(record)


async def _events_or_404(request: web.Request, types: list[str] | None) -> web.Response:
    sid = session_id_of(request)
    store = store_of(request)
    events = await store.events(sid, types)
    if not events and await store.get_session(sid) is None:
        return json_error(404, "not_found", "no such session")
    return web.json_response(events)


async def session_events(request: web.Request) -> web.Response:
    raw = request.query.get("type")
    types = [t for t in raw.split(",") if t] if raw else None
    return await _events_or_404(request, types)


async def session_turns(request: web.Request) -> web.Response:
    """Turn and interruption events; each turn carries ``stages_ms`` and ``total_ms`` (coach/turn_stages.py)."""
    sid = session_id_of(request)
    store = store_of(request)
    events = await store.events(sid, TURN_EVENT_TYPES)
    if not events and await store.get_session(sid) is None:
        return json_error(404, "not_found", "no such session")
    return web.json_response([with_stages(e) if e.get("type") == "turn" else e for e in events])


async def turn_stages(request: web.Request) -> web.Response:
    return web.json_response(turn_stage_definition())


async def room_presence(request: web.Request) -> web.Response:
    room_id = request.match_info["room_id"]
    if not ID_PATTERN.match(room_id):
        return json_error(404, "not_found", "no such room")
    store = store_of(request)
    owner = await store.room_owner(room_id)
    present = await store.presence(room_id)
    if owner is None and not present:
        return json_error(404, "not_found", "no such room")
    return web.json_response({"room": room_id, "owner": owner, "participants": present})


async def index(request: web.Request) -> web.StreamResponse:
    page = Path(state_of(request).settings.server.static_dir) / "index.html"
    if not page.is_file():
        return json_error(404, "not_found", "web client not installed")
    return web.FileResponse(page)


def add_routes(app: web.Application) -> None:
    """Root routes and the /api/ sub-app (its auth sees only REST requests)."""
    settings = app[STATE].settings
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/", index)
    static = Path(settings.server.static_dir)
    if static.is_dir():
        app.router.add_static("/static/", static, follow_symlinks=False)
    api = web.Application(middlewares=[error_middleware, make_rest_rate_limit(*settings.server.rest_rate),
                                       make_api_auth(settings.server.secret, open_api=settings.server.dev_tokens)])
    api.router.add_get("/clock", clock)
    api.router.add_post("/dev/token", dev_token)
    api.router.add_get("/scenarios", scenarios)
    api.router.add_get("/sessions", list_sessions)
    api.router.add_get("/sessions/{session_id}", get_session)
    api.router.add_get("/sessions/{session_id}/events", session_events)
    api.router.add_get("/sessions/{session_id}/turns", session_turns)
    api.router.add_get("/turn-stages", turn_stages)
    api.router.add_get("/rooms/{room_id}", room_presence)
    add_report_routes(api)
    app.add_subapp("/api/", api)
