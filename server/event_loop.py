"""Which event loop runs the server: asyncio's (default) or uvloop (optional, `livecoach[fast]`)."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any, Callable, Coroutine


class EventLoopUnavailable(RuntimeError):
    """The configured loop cannot run here (uvloop asked for but not installed)."""


def loop_runner(kind: str) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """``asyncio.run`` or ``uvloop.run`` for ``server.event_loop``."""
    if kind == "asyncio":
        return asyncio.run
    if kind == "uvloop":
        try:  # optional: only this setting needs it
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            raise EventLoopUnavailable("server.event_loop is 'uvloop' but uvloop is not installed "
                                       "(pip install 'livecoach[fast]')") from None
        run: Callable[[Coroutine[Any, Any, Any]], Any] = uvloop.run
        return run
    raise EventLoopUnavailable(f"server.event_loop must be 'asyncio' or 'uvloop', not {kind!r}")
