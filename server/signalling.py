"""``GET /ws``: authenticate, validate and route every client message; errors never close the socket
(except a refused token at join, and oversize frames)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, Callable

from aiohttp import WSMsgType, web

from coach.tasks import TaskOwner
from server.auth import TokenClaims, TokenError, verify_token
from server.limits import TokenBucket
from server.protocol import Join, Leave, Ping, ProtocolError, check_role, error_message, parse_client_message
from server.router import Router
from server.state import AppState, json_error, state_of

log = logging.getLogger(__name__)

OUTBOX_SIZE = 512  # a client this far behind is closed, not buffered without bound
# Past this fill, live-status messages a newer one replaces are dropped rather than queued: a
# receiver is not closed as a slow consumer because of chatter it can do without.
DROPPABLE_TYPES = frozenset({"metrics", "stream_health", "interim_transcript", "pong"})
DROPPABLE_ABOVE = OUTBOX_SIZE * 3 // 4
CLOSE_AUTH = 4401
RETRY_AFTER_S = 5
WRITER_DRAIN_S = 0.5
_CLOSE = object()


class Connection:
    """A WebSocket on this process. ``send`` never blocks: one owned writer task per socket."""

    def __init__(self, ws: web.WebSocketResponse, app_state: AppState) -> None:
        self.conn_id = uuid.uuid4().hex
        self.ws = ws
        self.state = app_state
        self.claims: TokenClaims | None = None
        self.owner: str | None = None
        self.joining = False  # join forwarded to the owner; reply may still be on its way
        self.joined = False
        self.closing = False
        self.release_unjoined: Callable[[], None] | None = None  # frees the unjoined slot, once
        server = app_state.settings.server
        self._rates = {kind: TokenBucket(rate, burst) for kind, (rate, burst) in server.message_rates.items()}
        self._rate_total = TokenBucket(*server.message_rate_total)
        self._limited_said: dict[str, float] = {}  # type -> when we last told the client
        self.dropped_status = 0
        self._queue: asyncio.Queue[Any] = asyncio.Queue(OUTBOX_SIZE)
        # The writer (and a forced close) are owned here: the handler's cleanup, or the app's,
        # closes the owner.
        self.tasks = TaskOwner(f"ws:{self.conn_id[:8]}")
        self.tasks.spawn(self._write(), f"ws-writer:{self.conn_id[:8]}")

    def send(self, msg: dict[str, Any]) -> None:
        if self.closing:
            return
        if msg.get("type") == "joined":
            self.joined = True
            self.free_unjoined_slot()
        elif msg.pop("_join_failed", False):
            self.joining = False
            msg = dict(msg)
        if msg.get("type") == "error":
            self.state.metrics.signalling_errors.labels(reason=str(msg.get("reason"))).inc()
        if msg.get("type") in DROPPABLE_TYPES and self._queue.qsize() >= DROPPABLE_ABOVE:
            self.dropped_status += 1
            return
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            log.warning("connection %s: client too slow, closing", self.conn_id[:8])
            self.drop(1008, "slow_consumer")

    def admit(self, kind: str) -> bool:
        """Take a token for a message of ``kind``; refused → one rate_limited error a second."""
        bucket = self._rates.get(kind)
        if self._rate_total.take() and (bucket is None or bucket.take()):
            return True
        now = time.monotonic()
        if now - self._limited_said.get(kind, -1.0) >= 1.0:
            self._limited_said[kind] = now
            wait = bucket.retry_after() if bucket is not None else self._rate_total.retry_after()
            self.error("rate_limited", f"too many {kind} messages; retry in {max(wait, 0.05):.2f} s")
        return False

    def free_unjoined_slot(self) -> None:
        release, self.release_unjoined = self.release_unjoined, None
        if release is not None:
            release()

    def expire_join(self, timeout_s: float) -> None:
        """The join deadline passed (wall time, whatever pings or pongs arrived meanwhile)."""
        if not (self.joined or self.joining or self.closing):
            self.error("join_timeout", f"send join within {timeout_s:g} s")
            self.drop(CLOSE_AUTH, "join_timeout")

    def drop(self, code: int, reason: str) -> None:
        """Close after the queued messages went out."""
        if self.closing:
            return
        self.closing = True
        try:
            self._queue.put_nowait((_CLOSE, code, reason))
        except asyncio.QueueFull:  # no room for the close marker: stop writing, close now
            self.tasks.spawn(self._close_now(code, reason), f"ws-close:{self.conn_id[:8]}")

    async def _close_now(self, code: int, reason: str) -> None:
        await self.tasks.cancel_all()  # the writer (this task is spared)
        await self.ws.close(code=code, message=reason.encode()[:120])

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, tuple) and item and item[0] is _CLOSE:
                await self.ws.close(code=item[1], message=item[2].encode()[:120])
                return
            try:
                await self.ws.send_str(json.dumps(item, separators=(",", ":"), default=str))
            except (ConnectionError, RuntimeError):
                return  # socket gone; the reader loop notices and cleans up

    def error(self, reason: str, message: str, ref: str | None = None) -> None:
        self.send(error_message(reason, message, ref))


async def ws_handler(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    services = state.services
    busy = {"Retry-After": str(RETRY_AFTER_S)}
    if state.closing or services is None:
        return json_error(503, "server_busy", "the server is starting or stopping, retry later", headers=busy)
    # The session cap, loop lag and CPU (server/admission.py); live sessions are never touched.
    refused = services.manager.admission.refusal(services.manager.peer_count)
    if refused is not None:
        return json_error(503, "server_busy", refused, headers=busy)
    address = request.remote or "unknown"
    if not state.unjoined.acquire(address):
        return json_error(429, "too_many_connections", "too many connections waiting to join, retry later",
                          headers={"Retry-After": str(RETRY_AFTER_S)})
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            state.unjoined.release(address)

    try:
        return await _serve_socket(request, state, services.router, release)
    finally:
        release()


async def _serve_socket(request: web.Request, state: AppState, router: Router,
                        release_unjoined: Callable[[], None]) -> web.StreamResponse:
    settings = state.settings
    # aiohttp's own cap closes the socket without a word; ours (in parse) replies too_large first.
    ws = web.WebSocketResponse(max_msg_size=settings.server.max_ws_message_bytes * 4,
                               heartbeat=settings.server.ws_heartbeat_s)
    await ws.prepare(request)
    conn = Connection(ws, state)
    conn.release_unjoined = release_unjoined
    router.local[conn.conn_id] = conn
    state.websockets.add(ws)
    state.connections.add(conn)
    state.metrics.connections.inc()
    # On wall time: aiohttp's receive timeout restarts on every heartbeat PONG, so a socket that
    # only answers pings would never time out through it.
    join_timeout = settings.server.join_timeout_s
    deadline = asyncio.get_running_loop().call_later(join_timeout, conn.expire_join, join_timeout)
    reason = "disconnected"
    try:
        while not conn.closing:
            raw = await ws.receive()
            if raw.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            if raw.type == WSMsgType.ERROR:
                reason = "ws_error"
                break
            if raw.type != WSMsgType.TEXT:
                conn.error("bad_json", "send JSON text frames, not binary")
                continue
            await _on_text(conn, state, router, raw.data)
    except asyncio.CancelledError:
        reason = "server_shutdown"
        raise
    finally:
        deadline.cancel()
        conn.closing = True
        state.websockets.discard(ws)
        state.metrics.connections.dec()
        try:
            await _shutdown_connection(conn, router, reason)
        finally:
            await conn.tasks.close()
            state.connections.discard(conn)
    return ws


async def _shutdown_connection(conn: Connection, router: Router, reason: str) -> None:
    try:
        await asyncio.shield(router.closed(conn, reason))
    except Exception:  # noqa: BLE001
        log.exception("closing connection %s failed", conn.conn_id[:8])
    # let queued messages (errors before an auth close) go out, briefly
    await conn.tasks.close(grace_s=WRITER_DRAIN_S)
    if not conn.ws.closed:
        await conn.ws.close()


async def _on_text(conn: Connection, state: AppState, router: Router, text: str) -> None:
    settings = state.settings
    try:
        msg = parse_client_message(text, settings)
    except ProtocolError as exc:
        conn.error(exc.reason, exc.message, exc.ref)
        oversize = len(text.encode("utf-8", "surrogatepass")) > settings.server.max_ws_message_bytes
        if exc.reason == "too_large" and oversize:
            conn.drop(1009, "too_large")  # an oversize frame ends the connection; a big SDP alone does not
        return
    ref = getattr(msg, "id", None)
    if not conn.admit(msg.type):
        return
    try:
        if isinstance(msg, Join):
            await _join(conn, state, router, msg)
            return
        if not (conn.joined or conn.joining):
            raise ProtocolError("not_joined", "the first message must be join", ref)
        if isinstance(msg, Ping):
            conn.send({"type": "pong", "t": msg.t, "server_ns": time.perf_counter_ns(), "ref": ref})
            return
        assert conn.claims is not None
        check_role(msg, conn.claims.role)
        await router.forward(conn, msg)
        if isinstance(msg, Leave) and conn.owner != state.process_id:
            conn.drop(1000, "left")  # remote owner: don't wait for its drop
    except ProtocolError as exc:
        conn.error(exc.reason, exc.message, exc.ref)


async def _join(conn: Connection, state: AppState, router: Router, msg: Join) -> None:
    if conn.joined or conn.joining:
        raise ProtocolError("already_joined", "this connection already joined", msg.id)
    try:
        claims = verify_token(state.settings.server.secret, msg.token)
    except TokenError as exc:
        conn.error(exc.reason, exc.message, msg.id)
        conn.drop(CLOSE_AUTH, exc.reason)
        return
    if msg.room is not None and msg.room != claims.room:
        conn.error("wrong_room", f"token is for another room than {msg.room!r}", msg.id)
        conn.drop(CLOSE_AUTH, "wrong_room")
        return
    conn.claims = claims
    conn.joining = True
    try:
        await router.join(conn, claims, msg)
    except Exception as exc:  # noqa: BLE001 - store down etc.
        conn.joining = False
        log.warning("join failed: %s", exc)
        raise ProtocolError("server_busy", "could not reach the room store, retry", msg.id) from None
