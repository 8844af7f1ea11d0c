"""Store + bus factory: Redis when a URL is configured, else memory + SQLite."""

from __future__ import annotations

from pathlib import Path

from server.settings import ServerSettings
from server.store.base import Bus, BusHandler, Store
from server.store.common import StoreError, StoreUnavailable
from server.store.durable import DurableWrites
from server.store.memory import MemoryBus, MemoryHub, MemoryStore
from server.store.redis_store import RedisBus, RedisStore

__all__ = [
    "Bus",
    "BusHandler",
    "MemoryBus",
    "MemoryHub",
    "MemoryStore",
    "RedisBus",
    "RedisStore",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]


async def open_store(
    settings: ServerSettings, process_id: str, *, prefix: str = "livecoach", timeout_s: float = 2.0
) -> tuple[Store, Bus]:
    """Open the configured store and bus; marks ``process_id`` alive for ``presence_ttl_s``.

    Raises StoreUnavailable (with the URL, password hidden) if Redis does not answer in ``timeout_s``.
    """
    store: MemoryStore | DurableWrites
    bus: MemoryBus | RedisBus
    if settings.redis_url:
        name = f"livecoach:{process_id}"
        redis_store = RedisStore(settings.redis_url, prefix, timeout_s=timeout_s, client_name=name)
        try:
            await redis_store.ping()
        except BaseException:
            await redis_store.close()
            raise
        # Event and record writes survive a Redis outage in a local spool (replayed in order).
        store = await DurableWrites(redis_store, Path(settings.data_dir) / "store-spool.sqlite3").open()
        bus = RedisBus(settings.redis_url, prefix, timeout_s=timeout_s, client_name=name)
    else:
        store = await MemoryStore(settings.data_dir).open()
        bus = MemoryBus()
    await store.heartbeat(process_id, [], settings.presence_ttl_s)
    return store, bus
