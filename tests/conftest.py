"""Shared test setup: loopback-only ICE, Redis URL, fixture paths."""

from __future__ import annotations

import os
from pathlib import Path

import aioice.ice
import pytest

from qa import fixtures as qa_fixtures

# aioice drops 127.0.0.1 from host candidates; tests talk over loopback only.
aioice.ice.get_host_addresses = lambda **kwargs: ["127.0.0.1"]

# Browser tests run as their own pytest invocation (they move the process into a private
# network namespace at configure time): `python -m pytest tests/browser`.
collect_ignore = ["browser"]

# Tests that want Redis ask for the `redis_url` fixture; every other app under test uses the
# default in-memory store even when the environment (CI) exports REDIS_URL.
_REDIS_URL = os.environ.pop("REDIS_URL", None) or "redis://127.0.0.1:6379/15"

# Admission by CPU/loop lag is off for apps under test: a test process also runs its clients and
# may use a whole core on a busy machine; tests/test_admission.py turns it on where it is tested.
os.environ.setdefault("LIVECOACH_SERVER__ADMISSION_MAX_CPU_PCT", "0")
os.environ.setdefault("LIVECOACH_SERVER__ADMISSION_MAX_LOOP_LAG_MS", "0")



@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Speech/noise WAVs made by qa/fixtures.py (espeak-ng + sox), cached per spec."""
    try:
        folder = qa_fixtures.fixtures_dir()
    except qa_fixtures.FixtureError as exc:
        pytest.fail(f"cannot make the speech fixtures: {exc}")
    if not (folder / "en_question.wav").exists():
        pytest.fail(f"speech fixtures not found in {folder} (LIVECOACH_FIXTURES overrides the folder)")
    return folder


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _REDIS_URL
