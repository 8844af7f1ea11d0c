"""``livecoach`` console script: serve, token, qa."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
from typing import TYPE_CHECKING, Sequence

from server.auth import ROLES, issue_token

if TYPE_CHECKING:
    from server.practice import CoachHooks
    from server.settings import Settings


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecoach", description="Live-commerce sales training server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="YAML config (default configs/default.yaml)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--process-id", help="id on the bus (default host-pid-random)")
    serve.add_argument("--log-level", default="INFO")

    token = sub.add_parser("token", help="print a join token")
    token.add_argument("--config")
    token.add_argument("--room", required=True)
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--user", required=True)
    token.add_argument("--ttl", type=float, help="seconds (default server.token_ttl_s)")

    qa = sub.add_parser("qa", help="latency QA harness (server.qa)", add_help=False)
    qa.add_argument("qa_args", nargs=argparse.REMAINDER)
    return parser


def _hooks(settings: "Settings") -> "CoachHooks":
    """AI customer for trainees, analysis for streamers (built before the loop serves).

    Imported here, not at the top: `livecoach token` should not load aiortc and the models."""
    from server.practice import CoachHooks

    return CoachHooks(settings)


async def serve(config: str | None, host: str | None, port: int | None, process_id: str | None) -> None:
    from aiohttp import web

    from server.app import make_app
    from server.settings import load_settings

    settings = load_settings(config)
    if host:
        settings.server.host = host
    if port is not None:
        settings.server.port = port
    app = make_app(settings, hooks=_hooks(settings), process_id=process_id)  # type: ignore[arg-type]
    runner = web.AppRunner(app, shutdown_timeout=settings.server.shutdown_timeout_s, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    addrs = [s.getsockname() for s in (site._server.sockets if site._server else [])]  # type: ignore[union-attr]
    print(f"livecoach serving on {', '.join(f'http://{a[0]}:{a[1]}' for a in addrs)}", flush=True)
    try:
        await stop.wait()
    finally:
        logging.getLogger(__name__).info("shutting down")
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["qa"]:
        try:
            qa = importlib.import_module("server.qa")
        except ImportError:
            print("livecoach qa: server.qa is not installed", file=sys.stderr)
            return 2
        return int(qa.main(args_list[1:]) or 0)
    args = _build_parser().parse_args(args_list)
    if args.command == "token":
        from server.settings import load_settings

        settings = load_settings(args.config)
        ttl = args.ttl if args.ttl is not None else settings.server.token_ttl_s
        try:
            print(issue_token(settings.server.secret, args.room, args.role, args.user, ttl))
        except ValueError as exc:
            print(f"livecoach token: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "serve":
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(serve(args.config, args.host, args.port, args.process_id))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
