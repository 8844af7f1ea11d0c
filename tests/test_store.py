"""Contract tests of the Store and Bus protocols, run against memory+SQLite and real Redis."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.settings import ServerSettings
from server.store import (
    MemoryBus,
    MemoryHub,
    MemoryStore,
    RedisBus,
    RedisStore,
    StoreError,
    StoreUnavailable,
    open_store,
)
from server.store.durable import DurableWrites

# Expiry is checked without racing the clock: what must expire gets a short TTL and we wait
# until it is gone (generous deadline); what must survive gets a TTL far longer than the test.
SHORT_TTL = 0.3
MEDIUM_TTL = 2.0
LONG_TTL = 60.0
EXPIRY_DEADLINE_S = 15.0


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + EXPIRY_DEADLINE_S
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {EXPIRY_DEADLINE_S} s")
        await asyncio.sleep(0.05)


@dataclass
class Backend:
    name: str
    make_bus: Callable[[], Awaitable[Any]]
    store: Any
    buses: list[Any] = field(default_factory=list)


async def _wipe(url: str, prefix: str) -> None:
    client = aioredis.from_url(url, decode_responses=True)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> AsyncIterator[Backend]:
    if request.param == "memory":
        hub = MemoryHub()
        store: Any = await MemoryStore(tmp_path / "data").open()
        b = Backend("memory", lambda: _remember(b, MemoryBus(hub)), store)
        prefix = None
    else:
        prefix = f"lctest:{uuid.uuid4().hex[:12]}"
        store = await RedisStore(redis_url, prefix).ping()
        b = Backend("redis", lambda: _remember(b, RedisBus(redis_url, prefix)), store)
    try:
        yield b
    finally:
        for bus in b.buses:
            await bus.close()
        await store.close()
        if prefix is not None:
            await _wipe(redis_url, prefix)


async def _remember(b: Backend, bus: Any) -> Any:
    b.buses.append(bus)
    return bus


def pid() -> str:
    return f"proc-{uuid.uuid4().hex[:8]}"


# ---- rooms -----------------------------------------------------------------------------------


async def test_claim_owner_release(backend: Backend) -> None:
    s, a, b = backend.store, pid(), pid()
    assert await s.room_owner("r1") is None
    assert await s.claim_room("r1", a, 5) == a
    assert await s.claim_room("r1", b, 5) == a  # already owned: returns the owner, no steal
    assert await s.room_owner("r1") == a
    await s.release_room("r1", b)  # not the owner: no effect
    assert await s.room_owner("r1") == a
    assert await s.claim_room("r2", b, 5) == b
    assert await s.list_rooms() == ["r1", "r2"]
    await s.release_room("r1", a)
    assert await s.room_owner("r1") is None
    assert await s.list_rooms() == ["r2"]
    assert await s.claim_room("r1", b, 5) == b


async def test_room_ttl_expiry_and_reclaim_refresh(backend: Backend) -> None:
    s, a, b = backend.store, pid(), pid()
    assert await s.claim_room("keep", a, SHORT_TTL) == a
    assert await s.claim_room("r", a, SHORT_TTL) == a  # claimed after "keep": expires no earlier
    assert await s.claim_room("keep", a, LONG_TTL) == a  # the owner re-claiming refreshes the TTL
    await _eventually(lambda: _is_none(s.room_owner("r")), "room r expiring")
    assert await s.room_owner("keep") == a  # without the refresh it would be gone before r
    assert await s.list_rooms() == ["keep"]
    assert await s.claim_room("r", b, SHORT_TTL) == b  # an expired room is free for anyone


async def _is_none(value: Awaitable[Any]) -> bool:
    return await value is None


async def _is_empty(value: Awaitable[list[Any]]) -> bool:
    return await value == []


async def _is_false(value: Awaitable[bool]) -> bool:
    return not await value


async def test_bad_ttl_is_a_clear_error(backend: Backend) -> None:
    with pytest.raises(StoreError, match="ttl_s"):
        await backend.store.claim_room("r", pid(), 0)


# ---- presence -------------------------------------------------------------------------------


async def test_presence_set_clear_expire(backend: Backend) -> None:
    s = backend.store
    await s.set_presence("r", "bob", {"role": "mentor"}, 5)
    await s.set_presence("r", "ann", {"role": "streamer", "n": 1}, 5)
    await s.set_presence("other", "zed", {"role": "qa"}, 5)
    assert await s.presence("r") == [
        {"role": "streamer", "n": 1, "user": "ann"},
        {"role": "mentor", "user": "bob"},
    ]
    await s.set_presence("r", "bob", {"role": "mentor", "whisper": True}, 5)  # update in place
    await s.clear_presence("r", "ann")
    assert await s.presence("r") == [{"role": "mentor", "whisper": True, "user": "bob"}]
    await s.clear_presence("r", "nobody")
    assert await s.presence("empty") == []
    await s.set_presence("short", "u", {}, SHORT_TTL)
    assert len(await s.presence("short")) in (0, 1)  # (a stalled machine may already see it expired)
    await _eventually(lambda: _is_empty(s.presence("short")), "presence expiring")
    assert len(await s.presence("r")) == 1  # the 5 s entries are untouched
    with pytest.raises(StoreError, match="JSON"):
        await s.set_presence("r", "x", {"bad": object()}, 5)


async def test_release_forgets_presence(backend: Backend) -> None:
    s, a = backend.store, pid()
    await s.claim_room("r", a, 5)
    await s.set_presence("r", "ann", {"role": "trainee"}, 5)
    await s.release_room("r", a)
    assert await s.presence("r") == []


async def test_heartbeat_keeps_alive_then_expires(backend: Backend) -> None:
    s, a, b = backend.store, pid(), pid()
    # a's room, presence and liveness first, with a TTL a stalled machine still meets...
    await s.heartbeat(a, [], MEDIUM_TTL)
    assert await s.claim_room("r", a, MEDIUM_TTL) == a
    await s.set_presence("r", "ann", {"role": "streamer"}, MEDIUM_TTL)
    # ...b's room after them, with the same TTL: once it is gone, a's would be gone too.
    assert await s.claim_room("foreign", b, MEDIUM_TTL) == b
    # a's heartbeat refreshes what a owns, and neither refreshes nor steals b's room nor creates one
    await s.heartbeat(a, ["r", "foreign", "never-claimed"], LONG_TTL)
    await _eventually(lambda: _is_none(s.room_owner("foreign")), "b's room expiring")
    assert await s.room_owner("r") == a
    assert [p["user"] for p in await s.presence("r")] == ["ann"]
    assert await s.process_alive(a)
    assert await s.room_owner("never-claimed") is None
    # The process's last heartbeat is short and it then stops (died): everything it held vanishes.
    await s.heartbeat(a, ["r"], SHORT_TTL)
    await _eventually(lambda: _is_none(s.room_owner("r")), "a's room expiring")
    await _eventually(lambda: _is_empty(s.presence("r")), "a's presence expiring")
    assert await s.list_rooms() == []
    await _eventually(lambda: _is_false(s.process_alive(a)), "a's liveness expiring")


async def test_metrics_snapshots_replace_and_expire(backend: Backend) -> None:
    s, a, b = backend.store, pid(), pid()
    await s.publish_metrics(a, "old", LONG_TTL)
    await s.publish_metrics(a, "new", LONG_TTL)  # the latest snapshot replaces the one before
    await s.publish_metrics(b, "b's", SHORT_TTL)
    assert (await s.process_metrics()).get(a) == "new"
    await _eventually(lambda: _lacks(s.process_metrics(), b), "b's snapshot expiring")
    assert (await s.process_metrics()).get(a) == "new"
    with pytest.raises(StoreError):
        await s.publish_metrics(a, "x", float("nan"))


async def _lacks(value: Awaitable[dict[str, str]], key: str) -> bool:
    return key not in await value


# ---- event log -------------------------------------------------------------------------------


async def test_events_append_order_and_filter(backend: Backend) -> None:
    s = backend.store
    sid, other = f"s-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:6]}"
    kinds = ["transcript", "turn", "transcript", "interruption", "turn", "alert"]
    ids = [await s.append_event(sid, {"type": k, "i": i, "text": "你好"}) for i, k in enumerate(kinds)]
    await s.append_event(other, {"type": "turn", "i": 99})
    assert len(set(ids)) == len(ids)
    assert all(isinstance(i, str) for i in ids)
    got = await s.events(sid)
    assert [e["i"] for e in got] == list(range(len(kinds)))
    assert got[0] == {"type": "transcript", "i": 0, "text": "你好"}
    assert [e["i"] for e in await s.events(sid, ["turn"])] == [1, 4]
    assert [e["i"] for e in await s.events(sid, ["turn", "alert"])] == [1, 4, 5]
    assert await s.events(sid, ["nope"]) == []
    assert await s.events(sid, []) == []
    assert [e["i"] for e in await s.events(other)] == [99]
    assert await s.events("missing") == []
    await s.append_event(sid, {"no_type": True})
    assert (await s.events(sid))[-1] == {"no_type": True}
    with pytest.raises(StoreError):
        await s.append_event(sid, ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="JSON"):
        await s.append_event(sid, {"type": "x", "v": float("nan")})


# ---- session records -------------------------------------------------------------------------


def _record(sid: str, user: str, started_at: float, **extra: Any) -> dict[str, Any]:
    return {"session_id": sid, "user": user, "room": "room-" + sid, "kind": "practice", "started_at": started_at, **extra}


async def test_listing_while_records_are_replaced_lists_each_once(backend: Backend) -> None:
    """A session's record is replaced (live -> ended) while someone lists the sessions: the list
    never shows it twice (seen: a live and an ended row of one session on the sessions page)."""
    s = backend.store
    for i in range(90):  # more than one fetch chunk (aiosqlite iterates 64 rows at a time)
        await s.save_session(_record(f"s{i:02d}", "ann", 100.0 + i))

    async def churn() -> None:
        for k in range(600):
            # the newest session (the first row a listing reads) ends, again and again
            await s.save_session(_record("s89", "ann", 189.0, status=f"v{k}"))

    async def listing() -> None:
        for _ in range(150):
            ids = [r["session_id"] for r in await s.list_sessions()]
            assert sorted(ids) == [f"s{i:02d}" for i in range(90)], ids

    await asyncio.gather(churn(), listing(), listing())


async def test_sessions_save_get_list(backend: Backend) -> None:
    s = backend.store
    await s.save_session(_record("s1", "ann", 100.0, score=0.5))
    await s.save_session(_record("s2", "bob", 300.0))
    await s.save_session(_record("s3", "ann", 200.0, report={"turns": [1, 2]}))
    assert await s.get_session("s3") == _record("s3", "ann", 200.0, report={"turns": [1, 2]})
    assert await s.get_session("nope") is None
    assert [r["session_id"] for r in await s.list_sessions()] == ["s2", "s3", "s1"]
    assert [r["session_id"] for r in await s.list_sessions(limit=2)] == ["s2", "s3"]
    assert [r["session_id"] for r in await s.list_sessions(user="ann")] == ["s3", "s1"]
    assert await s.list_sessions(user="nobody") == []
    assert await s.list_sessions(limit=0) == []
    # replace: new content and a new owner move the record between per-user lists
    await s.save_session(_record("s1", "bob", 400.0, score=0.9))
    assert (await s.get_session("s1"))["score"] == 0.9
    assert [r["session_id"] for r in await s.list_sessions()] == ["s1", "s2", "s3"]
    assert [r["session_id"] for r in await s.list_sessions(user="ann")] == ["s3"]
    assert [r["session_id"] for r in await s.list_sessions(user="bob")] == ["s1", "s2"]
    with pytest.raises(StoreError, match="started_at"):
        await s.save_session({"session_id": "x", "user": "u", "room": "r", "kind": "k"})
    with pytest.raises(StoreError, match="number"):
        await s.save_session(_record("x", "u", "yesterday"))  # type: ignore[arg-type]


# ---- bus -------------------------------------------------------------------------------------


async def _wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_bus_delivers_between_two_processes_in_order(backend: Backend) -> None:
    bus_a, bus_b = await backend.make_bus(), await backend.make_bus()
    a, b = pid(), pid()
    got_a: list[dict[str, Any]] = []
    got_b: list[dict[str, Any]] = []

    async def on_a(msg: dict[str, Any]) -> None:
        got_a.append(msg)

    async def on_b(msg: dict[str, Any]) -> None:
        got_b.append(msg)

    await bus_a.subscribe(a, on_a)
    await bus_b.subscribe(b, on_b)
    for i in range(50):
        await bus_b.publish(a, {"type": "ws", "i": i, "text": "提示"})
    await bus_a.publish(b, {"type": "reply", "ok": True})
    await bus_a.publish(pid(), {"type": "to-nobody"})  # no subscriber: silently dropped
    await _wait_for(lambda: len(got_a) == 50 and len(got_b) == 1)
    assert [m["i"] for m in got_a] == list(range(50))
    assert got_a[0] == {"type": "ws", "i": 0, "text": "提示"}
    assert got_b == [{"type": "reply", "ok": True}]
    with pytest.raises(StoreError, match="JSON"):
        await bus_a.publish(b, {"x": {1, 2}})


async def test_bus_survives_raising_handler(backend: Backend) -> None:
    bus_a, bus_b = await backend.make_bus(), await backend.make_bus()
    a = pid()
    got: list[int] = []

    async def flaky(msg: dict[str, Any]) -> None:
        if msg["i"] % 2 == 0:
            raise RuntimeError("handler bug")
        got.append(msg["i"])

    await bus_a.subscribe(a, flaky)
    for i in range(6):
        await bus_b.publish(a, {"i": i})
    await _wait_for(lambda: got == [1, 3, 5])


async def test_bus_close_stops_delivery_and_tasks(backend: Backend) -> None:
    bus_a, bus_b = await backend.make_bus(), await backend.make_bus()
    a = pid()
    got: list[dict[str, Any]] = []

    async def on_a(msg: dict[str, Any]) -> None:
        got.append(msg)

    await bus_a.subscribe(a, on_a)
    await bus_a.close()
    await bus_b.publish(a, {"late": True})
    await asyncio.sleep(0.1)
    assert got == []
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert f"bus:{a}" not in names and "redis-bus-reader" not in names  # bus_b never subscribed


# ---- memory-only: records survive a restart -------------------------------------------------


async def test_sqlite_records_survive_reopen(tmp_path: Path) -> None:
    data = tmp_path / "nested" / "data"
    store = await MemoryStore(data).open()
    await store.append_event("s", {"type": "turn", "n": 1})
    await store.save_session(_record("s", "ann", 1.0))
    await store.claim_room("r", "p", 5)
    await store.close()
    assert (data / "livecoach.sqlite3").exists()
    store = MemoryStore(data)  # lazily opened on first use
    try:
        assert await store.events("s") == [{"type": "turn", "n": 1}]
        assert await store.get_session("s") == _record("s", "ann", 1.0)
        assert await store.room_owner("r") is None  # rooms are process state, like expired keys
        db = await store.records.open()
        async with db.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
    finally:
        await store.close()


# ---- open_store -------------------------------------------------------------------------------


async def test_open_store_memory(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=str(tmp_path / "d"), redis_url=None)
    store, bus = await open_store(settings, "p1")
    try:
        assert isinstance(store, MemoryStore) and isinstance(bus, MemoryBus)
        assert await store.process_alive("p1")
    finally:
        await bus.close()
        await store.close()


@pytest.mark.redis
async def test_open_store_redis(redis_url: str, tmp_path) -> None:
    prefix = f"lctest:{uuid.uuid4().hex[:12]}"
    store, bus = await open_store(ServerSettings(redis_url=redis_url, presence_ttl_s=2, data_dir=str(tmp_path)),
                                  "p1", prefix=prefix)
    try:
        # Redis behind the outage spool (server/store/durable.py)
        assert isinstance(store, DurableWrites) and isinstance(store.inner, RedisStore) and isinstance(bus, RedisBus)
        assert await store.inner.process_alive("p1")
        assert (tmp_path / "store-spool.sqlite3").is_file() and store.spooled == 0
    finally:
        await bus.close()
        await store.close()
        await _wipe(redis_url, prefix)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_redis_refusing_connection_fails_fast() -> None:
    url = f"redis://:secretpw@127.0.0.1:{_free_port()}/15"
    t0 = time.perf_counter_ns()
    with pytest.raises(StoreUnavailable, match="did not answer") as info:
        await open_store(ServerSettings(redis_url=url), "p1", timeout_s=1.0)
    assert (time.perf_counter_ns() - t0) / 1e9 < 20  # bounded (it would hang without the timeout)
    assert "secretpw" not in str(info.value)


async def test_redis_silent_server_fails_fast() -> None:
    # Accepts TCP but never answers (a hung server, a wrong service on the port).
    writers: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: writers.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        t0 = time.perf_counter_ns()
        with pytest.raises(StoreUnavailable, match="no answer"):
            await open_store(ServerSettings(redis_url=f"redis://127.0.0.1:{port}/15"), "p1", timeout_s=1.0)
        assert (time.perf_counter_ns() - t0) / 1e9 < 20  # bounded (it would hang without the timeout)
        assert writers, "the client did connect"
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


@pytest.mark.redis
async def test_redis_bus_resubscribes_after_connection_loss(redis_url: str) -> None:
    prefix = f"lctest:{uuid.uuid4().hex[:12]}"
    name = f"lctest-{uuid.uuid4().hex[:8]}"
    bus_a, bus_b = RedisBus(redis_url, prefix, client_name=name), RedisBus(redis_url, prefix)
    admin = aioredis.from_url(redis_url, decode_responses=True)
    got: list[int] = []

    async def on_a(msg: dict[str, Any]) -> None:
        got.append(msg["i"])

    try:
        await bus_a.subscribe("a", on_a)
        await bus_b.publish("a", {"i": 1})
        await _wait_for(lambda: got == [1])
        # Kill only this bus's own pub/sub connection (found by its client name).
        clients = await admin.client_list()
        ids = [c["id"] for c in clients if c.get("name") == name and int(c.get("sub", 0)) > 0]
        assert ids
        for cid in ids:
            await admin.client_kill_filter(_id=cid)
        deadline = time.monotonic() + 5
        while 2 not in got and time.monotonic() < deadline:  # published until the resubscribe lands
            await bus_b.publish("a", {"i": 2})
            await asyncio.sleep(0.1)
        assert 2 in got
    finally:
        await bus_a.close()
        await bus_b.close()
        await admin.aclose()
