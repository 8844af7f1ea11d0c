"""``livecoach`` console script: serve, token, init, qa.

Every failure a user can cause (a bad config file or env value, a port in use, an unusable data
folder, a weak production secret) is one line on stderr and an exit code: 2 for usage/config,
1 for runtime. No traceback, and the process is gone at once.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from server.auth import ROLES, issue_token
from server.event_loop import EventLoopUnavailable, loop_runner
from server.settings import (
    DEV_SECRET,
    LOCAL_CONFIG,
    MIN_SECRET_BYTES,
    PACKAGED_CONFIGS,
    ConfigError,
    Settings,
    load_settings,
)
from server.workers import Supervisor, reserve_port, worker_argv

EXIT_RUNTIME = 1
EXIT_USAGE = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
log = logging.getLogger("livecoach")


class RuntimeFailure(RuntimeError):
    """Serving cannot go on (port in use, data folder unusable): one line, exit 1."""


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecoach", description="Live-commerce sales training server")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = (f"YAML config file (default: ./{LOCAL_CONFIG} if present, else the packaged "
                   "configs/default.yaml; LIVECOACH_CONFIG also names one)")

    serve = sub.add_parser("serve", help="run the server", description="Run the livecoach server.")
    serve.add_argument("--config", metavar="FILE", help=config_help)
    serve.add_argument("--host", help="address to listen on (default server.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port to listen on (default server.port, 8080; 0 = any free port)")
    serve.add_argument("--process-id", metavar="ID",
                       help="this process's id on the Redis bus (default host-pid-random)")
    serve.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                       help="logging threshold (default INFO)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes sharing the port (SO_REUSEPORT) and the Redis store; "
                            "N > 1 needs server.redis_url or REDIS_URL (default 1)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for workers
    serve.add_argument("--allow-remote-dev", action="store_true",
                       help="with dev tokens on, allow listening on a non-loopback address (anyone "
                            "who reaches it can get a token: for a trusted LAN demo only)")

    token = sub.add_parser("token", help="print a signed join token",
                           description="Print a signed, expiring join token for one room, role and user.")
    token.add_argument("--config", metavar="FILE", help=config_help)
    token.add_argument("--room", required=True, help="room name the token admits to")
    token.add_argument("--role", required=True, choices=ROLES, help="role in the room")
    token.add_argument("--user", required=True, help="user id shown in records and reports")
    token.add_argument("--ttl", type=float, metavar="SECONDS",
                       help="lifetime in seconds (default server.token_ttl_s)")

    init = sub.add_parser("init", help="write an editable config and scenarios",
                          description=f"Copy the packaged config to DIR/{LOCAL_CONFIG} and the scenarios "
                                      "to DIR/scenarios, to customise. `livecoach serve` run in DIR "
                                      "picks the config up.")
    init.add_argument("dir", nargs="?", default=".", help="folder to write into (default: the current one)")
    init.add_argument("--force", action="store_true", help="overwrite files that already exist")

    sub.add_parser("qa", help="latency QA harness (`livecoach qa --help`)", add_help=False)
    return parser


# ---- policy -----------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_serving_policy(settings: Settings, allow_remote_dev: bool) -> list[str]:
    """Refuse unsafe production settings (ConfigError); return warnings to log."""
    server = settings.server
    if not server.dev_tokens:
        secret = server.secret.encode()
        if server.secret == DEV_SECRET or len(secret) < MIN_SECRET_BYTES or len(set(secret)) < 12:
            raise ConfigError(
                f"server.secret must be at least {MIN_SECRET_BYTES} random bytes when dev tokens are off "
                "(set LIVECOACH_SERVER__SECRET, e.g. to the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        return []
    warnings = ["dev mode: anyone who reaches this server can get a join token and read every record "
                "(set server.dev_tokens: false and a secret for production)"]
    if not _is_loopback(server.host):
        if not allow_remote_dev:
            raise ConfigError(f"dev tokens are on: refusing to listen on {server.host} (not loopback); "
                              "turn server.dev_tokens off for production, or pass --allow-remote-dev")
        warnings.append(f"dev tokens on a non-loopback address ({server.host}): trusted networks only")
    return warnings


def check_data_dir(path: str) -> None:
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise RuntimeFailure(f"data folder {folder} is not usable: {exc.strerror or exc}") from None


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Bind before anything slow starts, so a taken port fails at once."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family, backlog=256, reuse_port=reuse_port)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise RuntimeFailure(f"cannot listen on {host}:{port}: {reason}") from None


def _serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(args.config)
    if args.host:
        settings.server.host = args.host
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port {args.port} is not a TCP port (0-65535)")
        settings.server.port = args.port
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers} must be at least 1")
    if args.workers > 1 and not settings.server.redis_url:
        raise ConfigError(f"--workers {args.workers} needs a shared Redis store: set server.redis_url "
                          "or REDIS_URL (workers share rooms, routing and records through it)")
    # Checked now, logged once listening: a start that fails says one line, not a warning too.
    warnings = check_serving_policy(settings, args.allow_remote_dev)
    check_data_dir(settings.server.data_dir)
    try:
        run_loop = loop_runner(settings.server.event_loop)
    except EventLoopUnavailable as exc:
        raise ConfigError(str(exc)) from None
    if args.workers > 1:
        return _supervise_workers(args, settings, warnings)
    sock = bind_socket(settings.server.host, settings.server.port, reuse_port=args.reuse_port)
    for warning in warnings:
        log.warning(warning)
    # Imported only now (not for a cycle): aiortc, onnxruntime and whisper take ~1 s to import, and
    # every check above must answer a user's mistake at once.
    from server.serving import serve

    try:
        run_loop(serve(settings, sock, args.process_id))
    finally:
        sock.close()
    return 0


def _supervise_workers(args: argparse.Namespace, settings: Settings, warnings: list[str]) -> int:
    host = settings.server.host
    try:
        reserved = reserve_port(host, settings.server.port)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise RuntimeFailure(f"cannot listen on {host}:{settings.server.port}: {reason}") from None
    for warning in warnings:
        log.warning(warning)
    with reserved:
        port = reserved.getsockname()[1]
        base = ["--host", host, "--log-level", args.log_level]
        if args.config:
            base += ["--config", args.config]
        if args.allow_remote_dev:
            base.append("--allow-remote-dev")
        argvs = [worker_argv(base, port, args.process_id, i) for i in range(args.workers)]
        log.info("starting %d workers on %s:%d", args.workers, host, port)
        grace = settings.server.shutdown_timeout_s + 10.0
        supervisor = Supervisor(argvs, grace)
        if supervisor.run():
            raise RuntimeFailure(f"a worker {supervisor.failed}; all workers stopped")
    return 0


def _token_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    ttl = args.ttl if args.ttl is not None else settings.server.token_ttl_s
    if not math.isfinite(ttl) or ttl <= 0:
        raise ConfigError(f"--ttl must be a positive number of seconds, not {args.ttl}")
    try:
        print(issue_token(settings.server.secret, args.room, args.role, args.user, ttl))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return 0


def _init_command(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    config, scenarios = target / LOCAL_CONFIG, target / "scenarios"
    sources = sorted((PACKAGED_CONFIGS / "scenarios").glob("*.yaml"))
    planned = [config] + [scenarios / src.name for src in sources]
    existing = [p for p in planned if p.exists()]
    if existing and not args.force:
        raise ConfigError(f"{existing[0]} already exists (use --force to overwrite)")
    try:
        scenarios.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGED_CONFIGS / "default.yaml", config)
        for src in sources:
            shutil.copyfile(src, scenarios / src.name)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write to {target}: {exc.strerror or exc}") from None
    print(f"wrote {config} and {len(sources)} scenarios in {scenarios}; "
          f"edit them, then run `livecoach serve` in {target.resolve()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["qa"]:
        # qa is a client of the server (top-level package); loaded only for this subcommand
        # because it pulls in aiortc and playwright, not to dodge a cycle.
        from qa.command import main as qa_main

        return int(qa_main(args_list[1:]) or 0)
    args = _build_parser().parse_args(args_list)
    commands = {"serve": _serve_command, "token": _token_command, "init": _init_command}
    try:
        return commands[args.command](args)
    except ConfigError as exc:
        print(f"livecoach {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeFailure as exc:
        print(f"livecoach {args.command}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
