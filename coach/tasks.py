"""One owner for background tasks: names them, logs their failures, cancels them on close.

Every layer (server, media, coach) spawns through a ``TaskOwner`` instead of keeping its own
``set[Task]``: a task that dies with an exception is logged once, and ``close()`` cancels
whatever is still running and waits for it, so nothing outlives its owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class TaskOwner:
    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run ``coro`` as a task named ``name``, owned until it ends or the owner closes."""
        if self._closed:
            coro.close()  # never awaited otherwise: close it so Python does not warn
            raise RuntimeError(f"task owner {self.name} is closed; cannot start {name}")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("%s: task %s failed", self.name, task.get_name(), exc_info=exc)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def running(self) -> int:
        return len(self._tasks)

    def names(self) -> list[str]:
        return sorted(t.get_name() for t in self._tasks)

    async def wait(self, timeout: float | None = None) -> None:
        """Let running tasks finish on their own (bounded), without cancelling them."""
        others = {t for t in self._tasks if t is not asyncio.current_task()}
        if others:
            await asyncio.wait(others, timeout=timeout)

    async def cancel_all(self) -> None:
        """Cancel what is running and wait for it; the owner keeps accepting new tasks."""
        current = asyncio.current_task()
        while pending := [t for t in self._tasks if t is not current]:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self, grace_s: float = 0.0) -> None:
        """Refuse new tasks, let running ones finish for ``grace_s``, cancel the rest. Idempotent."""
        self._closed = True
        if grace_s > 0:
            await self.wait(grace_s)
        await self.cancel_all()
