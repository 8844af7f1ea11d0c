"""``livecoach serve --workers N``: N worker processes on one port, supervised by the parent.

Each worker is a plain ``livecoach serve`` child that binds its own listening socket with
SO_REUSEPORT on the same address, so the kernel spreads new connections over the workers; they
share rooms, routing and records through Redis (required when N > 1). The parent holds a bound,
never-listening socket on the port (it reserves the port, and ``--port 0`` picks one for all),
forwards SIGTERM/SIGINT to every worker, and exits non-zero when a worker dies on its own. Every
child is reaped on every path; a worker also gets SIGTERM if the parent dies (PR_SET_PDEATHSIG).

Imports nothing heavy: the parent never loads aiortc or the models.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("livecoach")

_PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket: the port is ours, no connection queues on it."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the supervisor dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the supervisor's own cleanup is all there is
        pass


def worker_argv(base_args: Sequence[str], port: int, process_id: str | None, index: int) -> list[str]:
    """The child's command line: the parent's serve options, one worker, the resolved port."""
    argv = [sys.executable, "-m", "server.cli", "serve", *base_args, "--port", str(port),
            "--workers", "1", "--reuse-port"]
    if process_id:
        argv += ["--process-id", f"{process_id}-w{index}"]
    return argv


class Supervisor:
    """Starts the workers, waits for them; a stop signal is forwarded, a lone death stops all."""

    def __init__(self, argvs: list[list[str]], grace_s: float) -> None:
        self.argvs = argvs
        self.grace_s = grace_s
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.stopping = False
        self.failed: str | None = None  # how the first worker that died on its own ended

    def run(self) -> int:
        """0 when stopped by a signal; 1 when a worker died on its own (``failed`` says how)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            for argv in self.argvs:
                if self.stopping:
                    break
                child = subprocess.Popen(argv, preexec_fn=_die_with_parent)  # noqa: S603 - our own argv
                self.children[child.pid] = child
            self._wait_all()
        finally:
            self._stop_all(signal.SIGTERM)
            self._reap_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0 if self.failed is None else 1

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        self._stop_all(signum)

    def _stop_all(self, signum: int) -> None:
        for pid, child in self.children.items():
            if child.returncode is None:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:  # exited, not reaped yet
                    pass

    def _wait_all(self) -> None:
        """Until a stop signal or a worker's death; ``_reap_all`` then bounds the rest."""
        while not self.stopping and any(c.returncode is None for c in self.children.values()):
            pid, status = os.waitpid(-1, 0)  # a signal handler runs meanwhile; waitpid resumes
            self._record(pid, status)

    def _record(self, pid: int, status: int) -> None:
        child = self.children.get(pid)
        if child is None:
            return
        code = os.waitstatus_to_exitcode(status)
        child.returncode = code
        if not self.stopping:
            self.failed = f"exited with {code}" if code >= 0 else f"was killed by {signal.Signals(-code).name}"
            log.error("worker %d %s: stopping the other workers", pid, self.failed)
            self.stopping = True
            self._stop_all(signal.SIGTERM)

    def _reap_all(self) -> None:
        """Wait for every child up to the grace period, then SIGKILL what is left and reap it."""
        deadline = time.monotonic() + self.grace_s
        for pid, child in self.children.items():
            if child.returncode is not None:
                continue
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in %.1f s: killed", pid, self.grace_s)
                child.kill()
                child.wait()
