"""Shared test setup: loopback-only ICE, Redis URL, fixture paths."""

from __future__ import annotations

import os
from pathlib import Path

import aioice.ice
import pytest

# aioice drops 127.0.0.1 from host candidates; tests talk over loopback only.
aioice.ice.get_host_addresses = lambda **kwargs: ["127.0.0.1"]

# Browser tests run as their own pytest invocation (they move the process into a private
# network namespace at configure time): `python -m pytest tests/browser`.
collect_ignore = ["browser"]

# Tests that want Redis ask for the `redis_url` fixture; every other app under test uses the
# default in-memory store even when the environment (CI) exports REDIS_URL.
_REDIS_URL = os.environ.pop("REDIS_URL", None) or "redis://127.0.0.1:6379/15"

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("LIVECOACH_FIXTURES", ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "en_question.wav").exists():
        pytest.fail(f"speech fixtures not found in {FIXTURES} (set LIVECOACH_FIXTURES)")
    return FIXTURES


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _REDIS_URL
