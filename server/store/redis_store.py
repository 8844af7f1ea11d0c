"""Redis store and bus: several server processes share rooms, presence, records and messages.

Keys (``P`` = prefix):
  P:room:<room>:owner     string, owner process id, PX ttl          (claim: SET NX semantics in Lua)
  P:room:<room>:presence  hash user -> JSON info, PX ttl             (refreshed by the owner's heartbeat)
  P:rooms                 zset room -> expiry (ms, Redis clock)      (index for list_rooms)
  P:proc:<pid>            string, PX ttl                             (process liveness)
  P:metrics:<pid>         string, Prometheus text, PX ttl            (the summed /metrics view)
  P:events:<session>      stream, fields t=<type> e=<JSON>, MAXLEN ~ 10000
  P:session:<session>     string JSON record
  P:sessions, P:sessions:user:<user>   zset session -> started_at
Bus: pub/sub channel ``P:bus:<pid>`` (channels ignore the db number, hence the prefix).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from coach.tasks import TaskOwner
from server.store.base import BusHandler
from server.store.common import (
    StoreError,
    StoreUnavailable,
    check_event,
    check_session,
    check_ttl,
    dumps,
    presence_entry,
)

log = logging.getLogger(__name__)

EVENTS_MAXLEN = 10_000

# Lua: atomic across processes. TIME is the Redis clock, the same one PX expiry uses.
_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

_CLAIM = (
    _NOW_MS
    + """
local owner = redis.call('GET', KEYS[1])
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  owner = ARGV[1]
elseif owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if owner == ARGV[1] then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
end
return owner
"""
)

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 1
end
return 0
"""

# KEYS: proc, rooms index, then (owner, presence) per room; ARGV: pid, ttl_ms, room ids...
_HEARTBEAT = (
    _NOW_MS
    + """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
local kept = 0
for i = 3, #ARGV do
  local owner_key = KEYS[(i - 3) * 2 + 3]
  if redis.call('GET', owner_key) == ARGV[1] then
    redis.call('PEXPIRE', owner_key, ARGV[2])
    redis.call('PEXPIRE', KEYS[(i - 3) * 2 + 4], ARGV[2])
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[i])
    kept = kept + 1
  end
end
return kept
"""
)

_LIST_ROOMS = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""
)


def redacted(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _client(url: str, timeout_s: float, name: str | None) -> Any:
    """A ``redis.asyncio.Redis`` with ``decode_responses=True`` (typed Any: redis-py's types
    assume bytes | str everywhere, while this client only ever returns str)."""
    try:
        return aioredis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=timeout_s,
            socket_timeout=max(timeout_s, 5.0),
            health_check_interval=30,
            client_name=re.sub(r"[^\w.:-]", "_", name) if name else None,
        )
    except ValueError as exc:
        raise StoreUnavailable(f"bad Redis URL {redacted(url)}: {exc}") from exc


async def _ping(client: aioredis.Redis, url: str, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(client.ping(), timeout_s)
    except (asyncio.TimeoutError, RedisError, OSError) as exc:
        reason = "no answer" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
        raise StoreUnavailable(f"Redis at {redacted(url)} did not answer within {timeout_s:g} s ({reason})") from exc


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisStore:
    def __init__(
        self, url: str, prefix: str = "livecoach", *, timeout_s: float = 2.0, client_name: str | None = None
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.redis = _client(url, timeout_s, client_name)
        self._claim = self.redis.register_script(_CLAIM)
        self._release = self.redis.register_script(_RELEASE)
        self._heartbeat = self.redis.register_script(_HEARTBEAT)
        self._list_rooms = self.redis.register_script(_LIST_ROOMS)

    async def ping(self) -> "RedisStore":
        """Raise StoreUnavailable unless Redis answers within ``timeout_s``."""
        await _ping(self.redis, self.url, self.timeout_s)
        return self

    async def healthy(self) -> bool:
        """For /healthz: does Redis answer now?"""
        try:
            await self.ping()
        except StoreUnavailable:
            return False
        return True

    # ---- keys --------------------------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _owner_key(self, room_id: str) -> str:
        return self._k("room", room_id, "owner")

    def _presence_key(self, room_id: str) -> str:
        return self._k("room", room_id, "presence")

    # ---- rooms -------------------------------------------------------------------------------
    async def claim_room(self, room_id: str, process_id: str, ttl_s: float) -> str:
        ttl_ms = check_ttl(ttl_s)
        keys = [self._owner_key(room_id), self._k("rooms")]
        return str(await self._claim(keys=keys, args=[process_id, ttl_ms, room_id]))

    async def room_owner(self, room_id: str) -> str | None:
        return await self.redis.get(self._owner_key(room_id))

    async def release_room(self, room_id: str, process_id: str) -> None:
        keys = [self._owner_key(room_id), self._presence_key(room_id), self._k("rooms")]
        await self._release(keys=keys, args=[process_id, room_id])

    async def list_rooms(self) -> list[str]:
        rooms: list[str] = await self._list_rooms(keys=[self._k("rooms")])
        if not rooms:
            return []
        owners = await self.redis.mget([self._owner_key(r) for r in rooms])
        return sorted(r for r, owner in zip(rooms, owners) if owner is not None)

    # ---- presence ----------------------------------------------------------------------------
    async def set_presence(self, room_id: str, user_id: str, info: dict[str, Any], ttl_s: float) -> None:
        ttl_ms = check_ttl(ttl_s)
        if not isinstance(info, dict):
            raise StoreError("presence info must be a dict")
        key = self._presence_key(room_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, user_id, dumps(info, "presence info"))
            pipe.pexpire(key, ttl_ms)
            await pipe.execute()

    async def clear_presence(self, room_id: str, user_id: str) -> None:
        await self.redis.hdel(self._presence_key(room_id), user_id)

    async def presence(self, room_id: str) -> list[dict[str, Any]]:
        entries = await self.redis.hgetall(self._presence_key(room_id))
        return [presence_entry(user, json.loads(raw)) for user, raw in sorted(entries.items())]

    async def heartbeat(self, process_id: str, room_ids: list[str], ttl_s: float) -> None:
        ttl_ms = check_ttl(ttl_s)
        keys = [self._k("proc", process_id), self._k("rooms")]
        for room_id in room_ids:
            keys += [self._owner_key(room_id), self._presence_key(room_id)]
        await self._heartbeat(keys=keys, args=[process_id, ttl_ms, *room_ids])

    async def process_alive(self, process_id: str) -> bool:
        return bool(await self.redis.exists(self._k("proc", process_id)))

    # ---- session event log (streams) -----------------------------------------------------------
    async def publish_metrics(self, process_id: str, text: str, ttl_s: float) -> None:
        await self.redis.set(self._k("metrics", process_id), text, px=check_ttl(ttl_s))

    async def process_metrics(self) -> dict[str, str]:
        prefix = self._k("metrics", "")
        keys = [key async for key in self.redis.scan_iter(match=f"{_glob_escape(prefix)}*", count=100)]
        if not keys:
            return {}
        texts = await self.redis.mget(keys)
        return {key[len(prefix):]: text for key, text in zip(keys, texts) if text is not None}

    async def append_event(self, session_id: str, event: dict[str, Any]) -> str:
        kind = check_event(event)
        fields = {"t": kind, "e": dumps(event, "event")}
        return str(await self.redis.xadd(self._k("events", session_id), fields, maxlen=EVENTS_MAXLEN))

    async def events(self, session_id: str, types: list[str] | None = None) -> list[dict[str, Any]]:
        if types is not None and not types:
            return []
        wanted = set(types) if types else None
        entries = await self.redis.xrange(self._k("events", session_id), "-", "+")
        return [json.loads(f["e"]) for _, f in entries if wanted is None or f.get("t") in wanted]

    # ---- session records -----------------------------------------------------------------------
    async def save_session(self, record: dict[str, Any]) -> None:
        session_id, user, started_at = check_session(record)
        data = dumps(record, "session record")
        key = self._k("session", session_id)
        previous = await self.redis.get(key)
        async with self.redis.pipeline(transaction=True) as pipe:
            if previous is not None:
                old_user = str(json.loads(previous).get("user"))
                if old_user != user:
                    pipe.zrem(self._k("sessions", "user", old_user), session_id)
            pipe.set(key, data)
            pipe.zadd(self._k("sessions"), {session_id: started_at})
            pipe.zadd(self._k("sessions", "user", user), {session_id: started_at})
            await pipe.execute()

    async def get_session(self, session_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self._k("session", session_id))
        return json.loads(raw) if raw is not None else None

    async def list_sessions(self, user: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        index = self._k("sessions") if user is None else self._k("sessions", "user", user)
        ids = await self.redis.zrevrange(index, 0, limit - 1)
        if not ids:
            return []
        raws = await self.redis.mget([self._k("session", sid) for sid in ids])
        return [json.loads(raw) for raw in raws if raw is not None]

    async def close(self) -> None:
        await self.redis.aclose()


class RedisBus:
    """Pub/sub channel per process id; one owned reader task delivers to the handlers in order.

    Handlers run one at a time on the reader task: keep them short, and never await a reply that
    would arrive through this same bus inside a handler. A raising handler is logged, not fatal.
    """

    def __init__(self, url: str, prefix: str = "livecoach", *, timeout_s: float = 2.0, client_name: str | None = None):
        self.url = url
        self.prefix = prefix
        self.redis = _client(url, timeout_s, client_name)
        self.timeout_s = timeout_s
        self._pubsub = self.redis.pubsub()
        self._handlers: dict[str, BusHandler] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._reader = TaskOwner("redis-bus")
        self._closed = False

    def _channel(self, process_id: str) -> str:
        return f"{self.prefix}:bus:{process_id}"

    async def publish(self, process_id: str, message: dict[str, Any]) -> None:
        if not isinstance(message, dict):
            raise StoreError(f"bus message must be a dict, got {type(message).__name__}")
        receivers = await self.redis.publish(self._channel(process_id), dumps(message, "bus message"))
        if not receivers:
            log.debug("bus: no subscriber for %s, message dropped", process_id)

    async def subscribe(self, process_id: str, handler: BusHandler) -> None:
        if self._closed:
            raise StoreError("bus is closed")
        channel = self._channel(process_id)
        self._handlers[channel] = handler
        if channel in self._confirmed:
            return  # a second subscribe only replaces the handler
        confirmed = self._confirmed[channel] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._pubsub.subscribe(channel), self.timeout_s)
            if not self._reader.running:
                self._reader.spawn(self._read(), "redis-bus-reader")
            # Wait for Redis to confirm: a publish from another connection right after we return
            # must not race the SUBSCRIBE command.
            await asyncio.wait_for(asyncio.shield(confirmed), self.timeout_s)
        except (asyncio.TimeoutError, RedisError, OSError) as exc:
            del self._confirmed[channel]
            raise StoreUnavailable(f"bus: subscribing to {channel} on {redacted(self.url)} failed: {exc!r}") from exc

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # connection lost: redis-py reconnects and resubscribes next call
                log.warning("bus reader: %s: %s; retrying", type(exc).__name__, exc)
                await asyncio.sleep(0.5)
                continue
            if message is None:
                continue
            if message.get("type") == "subscribe":
                confirmed = self._confirmed.get(message["channel"])
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
                continue
            if message.get("type") != "message":
                continue
            handler = self._handlers.get(message["channel"])
            if handler is None:
                continue
            try:
                await handler(json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bus handler for %s failed", message["channel"])

    async def close(self) -> None:
        self._closed = True
        await self._reader.close()
        try:
            await self._pubsub.aclose()
        finally:
            await self.redis.aclose()
