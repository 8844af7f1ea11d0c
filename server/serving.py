"""Serving one process: the app on an already bound socket until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from server.app import make_app
from server.practice import CoachHooks
from server.settings import Settings

log = logging.getLogger("livecoach")


class AccessLogger(AbstractAccessLogger):
    """One line per request, without the query string: join tokens travel there and must not be logged."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %s %s %.1fms', request.remote, request.method, request.path,
                         response.status, response.body_length, time * 1000)



def http_runner_options(settings: Settings) -> dict[str, Any]:
    """AppRunner options of a served process (tests use the same)."""
    return {
        "shutdown_timeout": settings.server.shutdown_timeout_s,
        "handle_signals": False,
        "access_log_class": AccessLogger,
        # aiohttp closes a connection whose request has not fully arrived by then (from connect,
        # and between keep-alive requests): no header trickling holds a socket for long.
        "keepalive_timeout": settings.server.http_idle_timeout_s,
    }


async def serve(settings: Settings, sock: socket.socket, process_id: str | None) -> None:
    hooks = CoachHooks(settings)  # preloads the models before the loop serves
    app = make_app(settings, hooks=hooks, process_id=process_id)
    runner = web.AppRunner(app, **http_runner_options(settings))
    await runner.setup()
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        # What start-up loaded (modules, models: ~100k objects) never becomes garbage; a full
        # collection walking it stalls the loop ~50 ms here, long enough for a reply's packets
        # to arrive in a burst. Frozen, the collector walks only what sessions allocate.
        gc.collect()
        gc.freeze()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        host, port = sock.getsockname()[:2]
        print(f"livecoach serving on http://{host}:{port} (config {settings.config_file}, "
              f"data {settings.server.data_dir})", flush=True)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
