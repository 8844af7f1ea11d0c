"""Application factory: ``make_app(settings, hooks=None, process_id=None)``.

One ``cleanup_ctx`` builds store/bus → outbox → room manager → router in that order and tears
them down in reverse; ``on_shutdown`` first closes the WebSockets (their handlers then leave
their rooms). Every step is bounded by ``server.shutdown_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from coach.tasks import TaskOwner
from media.peer import set_jitter_prefetch, use_loopback_ice
from server import security
from server.admission import Admission
from server.api import add_routes
from server.outbox import ConnectionOutbox
from server.recovery import finalize_orphaned_sessions
from server.rooms import MediaHooks, NoMediaHooks, RoomManager
from server.router import Router
from server.settings import Settings, recordings_dir
from server.state import STATE, AppState, Services, state_of
from server.store import open_store

log = logging.getLogger(__name__)

__all__ = ["STATE", "AppState", "make_app", "state_of"]


def make_app(settings: Settings, hooks: MediaHooks | None = None, process_id: str | None = None) -> web.Application:
    pid = process_id or f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    app = web.Application(client_max_size=256 * 1024)
    app[STATE] = AppState(settings=settings, process_id=pid, hooks=hooks or NoMediaHooks())
    app.cleanup_ctx.append(_services)
    app.on_shutdown.append(_close_websockets)
    security.install(app)
    add_routes(app)
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    timeout = settings.server.shutdown_timeout_s
    set_jitter_prefetch(settings.media.jitter_prefetch)
    if settings.media.ice_loopback_only:
        use_loopback_ice()
    store, bus = await open_store(settings.server, state.process_id)
    try:
        await finalize_orphaned_sessions(store, recordings_dir(settings))
    except Exception:  # noqa: BLE001 - recovery must not keep the server from starting
        log.exception("finishing orphaned sessions failed")
    outbox = ConnectionOutbox(state.process_id, bus)
    manager = RoomManager(settings, store, state.metrics, state.hooks, outbox, state.process_id,
                          Admission(settings.server, state.load))
    router = Router(settings, store, bus, manager, outbox)
    load_task = TaskOwner("load")
    try:
        load_task.spawn(state.load.run(), "load-monitor")
        await router.start()
        state.services = Services(store=store, bus=bus, store_kind="redis" if settings.server.redis_url else "memory",
                                  outbox=outbox, manager=manager, router=router)
        log.info("livecoach %s started (store=%s)", state.process_id, state.services.store_kind)
        yield
    finally:
        try:
            await asyncio.wait_for(manager.close(), timeout)
        except asyncio.TimeoutError:
            log.error("closing rooms took more than %.1f s", timeout)
        try:
            await asyncio.wait_for(state.hooks.close(), timeout)
        except asyncio.TimeoutError:
            log.error("closing the media hooks took more than %.1f s", timeout)
        await _cancel_connection_writers(state)
        await router.close()
        await outbox.close()
        state.services = None
        await bus.close()
        await store.close()
        await load_task.close()


async def _close_websockets(app: web.Application) -> None:
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


async def _cancel_connection_writers(state: AppState) -> None:
    await asyncio.gather(*(c.tasks.close() for c in list(state.connections)), return_exceptions=True)
