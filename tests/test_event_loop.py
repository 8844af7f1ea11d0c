"""`server.event_loop: uvloop`: a practice session (real aiortc peers, the `livecoach qa` harness,
fake OpenAI providers) is answered by a `livecoach serve` running on uvloop; a bad value is a
one-line config error."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from qa.command import main as qa_main
from server.event_loop import EventLoopUnavailable, loop_runner
from tests.server_env import serve_env
from tests.test_workers import free_port, provider  # noqa: F401 - the fake provider fixture

ROOT = Path(__file__).resolve().parent.parent


def _serve(tmp_path: Path, event_loop: str, provider_url: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = serve_env()
    env.update({"LIVECOACH_SERVER__EVENT_LOOP": event_loop,
                "LIVECOACH_SERVER__DATA_DIR": str(tmp_path / "data"),
                "LIVECOACH_MEDIA__ICE_LOOPBACK_ONLY": "true", "LIVECOACH_MEDIA__RECORD_AUDIO": "false"})
    if provider_url:
        env.update({f"LIVECOACH_COACH__PROVIDERS__{k}": "openai" for k in ("STT", "LLM", "TTS")})
        env.update({"LIVECOACH_COACH__PROVIDERS__OPENAI__BASE_URL": provider_url,
                    "LIVECOACH_COACH__PROVIDERS__OPENAI__API_KEY": "test"})
    proc = subprocess.Popen([sys.executable, "-m", "server", "serve", "--port", str(port), "--log-level", "WARNING"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, f"http://127.0.0.1:{port}"


def test_a_practice_session_runs_on_uvloop(tmp_path: Path, provider: str, fixtures_dir: Path) -> None:  # noqa: F811
    proc, url = _serve(tmp_path, "uvloop", provider)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
                    health = json.loads(resp.read())
                break
            except OSError:
                assert time.monotonic() < deadline, "no /healthz in 60 s"
                time.sleep(0.2)
        assert health["event_loop"] == "uvloop", health
        out = tmp_path / "qa.json"
        rc = qa_main(["--url", url, "--sessions", "1", "--turns", "1", "--prompt",
                      str(fixtures_dir / "en_question.wav"), "--scenario", "skincare-sensitive-en",
                      "--json", str(out), "--quiet"])
        turn = json.loads(out.read_text())["runs"][0]["turns"][0]
        assert rc == 0 and turn["error"] is None and turn["latency_ms"] > 0, turn
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.communicate()[0]


def test_an_unknown_event_loop_is_a_one_line_config_error(tmp_path: Path) -> None:
    proc, _url = _serve(tmp_path, "trio")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, out
    assert "event_loop" in out and "Traceback" not in out, out
    with pytest.raises(EventLoopUnavailable):
        loop_runner("trio")
