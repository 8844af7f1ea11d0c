"""The environment of a `livecoach serve` child process started by a test."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve_env(**settings: str) -> dict[str, str]:
    """This process's environment without its LIVECOACH_* / REDIS_URL, plus the repository on
    PYTHONPATH, admission by load off (the test's own clients share the cores; a busy machine
    must not turn a session away: tests/test_admission.py tests admission) and ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVECOACH_") and k != "REDIS_URL"}
    env.update({"PYTHONPATH": str(ROOT), "LIVECOACH_SERVER__ADMISSION_MAX_CPU_PCT": "0",
                "LIVECOACH_SERVER__ADMISSION_MAX_LOOP_LAG_MS": "0"})
    env.update(settings)
    return env
