"""Child processes of benches and tests (servers, fake providers, QA clients): stop them surely."""

from __future__ import annotations

import signal
import subprocess
from typing import Iterable


def stop_process(proc: subprocess.Popen, timeout_s: float = 10.0) -> int | None:
    """SIGTERM (a graceful stop) then SIGKILL if it hangs; always reaped. Returns the exit code."""
    stop_processes([proc], timeout_s)
    return proc.returncode


def stop_processes(procs: Iterable[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """SIGTERM every one first (they stop side by side), then wait for each; SIGKILL a straggler."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_stdin_child(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """A child that runs until its stdin closes (the benches' fake provider); killed if it lingers."""
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
