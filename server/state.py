"""Typed application state, its accessors, and the one JSON error shape of every HTTP handler.

``AppState`` exists from ``make_app``; ``Services`` (store → outbox → manager → router) exist
only between startup and cleanup (server/app.py builds them in one ``cleanup_ctx``). Handlers
reach both through ``state_of(request)`` / ``services_of(request)``, which work from the root
app and from the REST sub-app alike (``request.config_dict``).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from coach.tasks import TaskOwner
from server.admission import LoadMonitor
from server.auth import ID_PATTERN
from server.limits import ConnectionCap
from server.metrics import Metrics
from server.outbox import ConnectionOutbox
from server.rooms import MediaHooks, RoomManager
from server.router import Router
from server.settings import Settings
from server.store.base import Bus, Store
from server.store.common import STORE_OUTAGE_ERRORS

log = logging.getLogger(__name__)


class OpenConnection(Protocol):
    """A WebSocket connection's tasks (its writer), which cleanup closes if its handler did not."""

    tasks: TaskOwner


@dataclass
class Services:
    store: Store
    bus: Bus
    store_kind: str
    outbox: ConnectionOutbox
    manager: RoomManager
    router: Router


@dataclass
class AppState:
    settings: Settings
    process_id: str
    hooks: MediaHooks
    metrics: Metrics = field(default_factory=Metrics)
    services: Services | None = None  # set by startup, cleared by cleanup
    websockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    connections: set[OpenConnection] = field(default_factory=set)
    closing: bool = False
    unjoined: ConnectionCap = field(init=False)  # WebSockets not joined yet, per process and address
    load: LoadMonitor = field(init=False)  # loop lag and CPU; its task runs while the services do

    def __post_init__(self) -> None:
        server = self.settings.server
        self.unjoined = ConnectionCap(server.max_unjoined_connections, server.max_unjoined_per_address)
        self.load = LoadMonitor(server, self.metrics)

    def running(self) -> Services:
        """The live services, or a 503 JSON error while the app starts or stops."""
        if self.services is None:
            raise ApiError(503, "starting", "the server is starting or stopping")
        return self.services

    # Shorthands for tests and tools that hold a started app.
    @property
    def store(self) -> Store:
        return self.running().store

    @property
    def manager(self) -> RoomManager:
        return self.running().manager

    @property
    def router(self) -> Router:
        return self.running().router


STATE = web.AppKey("livecoach_state", AppState)


class ApiError(Exception):
    """Raised by handlers and helpers; turned into ``json_error`` by the error middleware."""

    def __init__(self, status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers


def json_error(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The one error body of the HTTP API: ``{"error": reason, "message": message}``."""
    return web.json_response({"error": reason, "message": message}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.reason, exc.message, exc.headers)
    except STORE_OUTAGE_ERRORS:
        log.warning("%s %s: the store is unavailable", request.method, request.path)
        return json_error(503, "store_unavailable", "the record store is unavailable, retry later",
                          {"Retry-After": "5"})
    return response


def state_of(request: web.Request) -> AppState:
    return request.config_dict[STATE]


def services_of(request: web.Request) -> Services:
    return state_of(request).running()


def store_of(request: web.Request) -> Store:
    return services_of(request).store


def session_id_of(request: web.Request) -> str:
    """The ``{session_id}`` of the path; a malformed one is simply not found."""
    sid = request.match_info["session_id"]
    if not ID_PATTERN.match(sid):
        raise ApiError(404, "not_found", "no such session")
    return sid


async def session_or_404(request: web.Request) -> dict[str, Any]:
    record = await store_of(request).get_session(session_id_of(request))
    if record is None:
        raise ApiError(404, "not_found", "no such session")
    return record
