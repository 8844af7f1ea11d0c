"""Application factory: ``make_app(settings, hooks=None, process_id=None)``.

Startup opens the store/bus and the router; shutdown closes every socket, peer, task and the
store, bounded by ``server.shutdown_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
import weakref
from typing import Any
from dataclasses import dataclass, field
from aiohttp import web

from media.peer import set_jitter_prefetch, use_loopback_ice
from server.metrics import Metrics
from server.rooms import MediaHooks, NoMediaHooks, RoomManager
from server.router import Router
from server.settings import Settings
from server.store.base import Bus, Store

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    process_id: str
    hooks: MediaHooks
    metrics: Metrics = field(default_factory=Metrics)
    store: Store | None = None
    bus: Bus | None = None
    store_kind: str = "memory"
    manager: RoomManager = None  # type: ignore[assignment]  # set on startup
    router: Router = None  # type: ignore[assignment]
    websockets: "weakref.WeakSet[web.WebSocketResponse]" = field(default_factory=weakref.WeakSet)
    connections: set[Any] = field(default_factory=set)  # signalling.Connection objects
    closing: bool = False


STATE = web.AppKey("livecoach_state", AppState)


def make_app(settings: Settings, hooks: MediaHooks | None = None, process_id: str | None = None) -> web.Application:
    pid = process_id or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    state = AppState(settings=settings, process_id=pid, hooks=hooks or NoMediaHooks())
    # Until startup runs, /healthz etc. must still answer: a manager with no store.
    from server.api_auth import make_api_auth

    app = web.Application(client_max_size=256 * 1024,
                          middlewares=[make_api_auth(settings.server.secret, open_api=settings.server.dev_tokens)])
    app[STATE] = state
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)

    from server.api import add_routes  # late: api imports STATE from here

    add_routes(app)
    try:
        from server.api_reports import add_report_routes  # written by the lead
    except ImportError:
        pass
    else:
        add_report_routes(app)
    return app


async def _startup(app: web.Application) -> None:
    state = app[STATE]
    settings = state.settings
    set_jitter_prefetch(settings.media.jitter_prefetch)
    if settings.media.ice_loopback_only:
        use_loopback_ice()
    from server.store import open_store

    state.store, state.bus = await open_store(settings.server, state.process_id)
    state.store_kind = "redis" if settings.server.redis_url else "memory"
    state.manager = RoomManager(settings, state.store, state.metrics, state.hooks, outbox=None,  # type: ignore[arg-type]
                                process_id=state.process_id)
    state.router = Router(settings, state.process_id, state.store, state.bus, state.manager)
    state.manager.outbox = state.router
    await state.router.start()
    log.info("livecoach %s started (store=%s)", state.process_id, state.store_kind)


async def _shutdown(app: web.Application) -> None:
    """Close sockets first (their handlers then release their rooms), then the rooms."""
    state = app[STATE]
    state.closing = True
    timeout = state.settings.server.shutdown_timeout_s
    sockets = [ws for ws in list(state.websockets) if not ws.closed]
    if sockets:
        closes = [ws.close(code=1001, message=b"server_shutdown") for ws in sockets]
        try:
            await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), timeout)
        except asyncio.TimeoutError:
            log.error("closing %d websockets took more than %.1f s", len(sockets), timeout)


async def _cleanup(app: web.Application) -> None:
    state = app[STATE]
    timeout = state.settings.server.shutdown_timeout_s
    try:
        if state.manager is not None:
            await asyncio.wait_for(state.manager.close(), timeout)
    except asyncio.TimeoutError:
        log.error("closing rooms took more than %.1f s", timeout)
    writers = [c.writer for c in list(state.connections)]
    for writer in writers:
        writer.cancel()
    await asyncio.gather(*writers, return_exceptions=True)
    if state.router is not None:
        await state.router.close()
    if state.bus is not None:
        await state.bus.close()
    if state.store is not None:
        await state.store.close()


def get_state(app: web.Application) -> AppState:
    return app[STATE]


__all__ = ["STATE", "AppState", "make_app", "get_state"]
