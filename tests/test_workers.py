"""`livecoach serve --workers 2`: two processes on one port (SO_REUSEPORT) sharing Redis.

Both workers answer /healthz on the same port (distinct process ids over fresh connections), a
trainee practice session (the real `livecoach qa` harness, fake OpenAI providers) is answered,
SIGTERM to the supervisor stops and reaps both workers (exit 0), and a worker that dies on its
own takes the supervisor down with a non-zero exit, the other worker stopped too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa.command import main as qa_main
from tests.server_env import serve_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.redis

FAKE_PROVIDER = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from tests.fakes.openai_server import FakeOpenAI

async def main():
    async with FakeOpenAI(reply="Sure, it is gentle on sensitive skin.", stt_text="Does it suit sensitive skin?",
                          stt_delay_s=0.05, first_token_delay_s=0.05, tts_ms_per_char=20.0) as fake:
        print(fake.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _health(url: str) -> dict:
    # urllib opens a fresh connection each time: the kernel picks a worker per connection.
    with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


class Workers:
    def __init__(self, tmp_path: Path, redis_url: str, provider_url: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = serve_env()
        env.update({"REDIS_URL": redis_url,
                    "LIVECOACH_SERVER__DATA_DIR": str(tmp_path / "data"),
                    "LIVECOACH_MEDIA__ICE_LOOPBACK_ONLY": "true", "LIVECOACH_MEDIA__RECORD_AUDIO": "false"})
        if provider_url:
            env.update({"LIVECOACH_COACH__PROVIDERS__STT": "openai", "LIVECOACH_COACH__PROVIDERS__LLM": "openai",
                        "LIVECOACH_COACH__PROVIDERS__TTS": "openai",
                        "LIVECOACH_COACH__PROVIDERS__OPENAI__BASE_URL": provider_url,
                        "LIVECOACH_COACH__PROVIDERS__OPENAI__API_KEY": "test"})
        self.log_path = tmp_path / "workers.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--workers", "2", "--port", str(self.port),
                 "--log-level", "WARNING"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def worker_pids(self, timeout_s: float = 60.0) -> set[int]:
        """OS pids behind /healthz, polled over fresh connections until two distinct ones answer."""
        pids: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(pids) < 2:
            assert self.proc.poll() is None, f"supervisor exited {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"only workers {pids} answered in {timeout_s} s:\n{self.log()}"
            try:
                body = _health(self.url)
            except OSError:
                time.sleep(0.2)
                continue
            assert body["ok"] and body["store"] == "redis", body
            pids.add(body["pid"])
        return pids

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


@pytest.fixture
def provider() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_PROVIDER, str(ROOT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        assert url.startswith("http://"), "the fake provider did not start"
        yield url
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_two_workers_share_the_port_and_answer_a_practice_session(
        tmp_path: Path, redis_url: str, provider: str, fixtures_dir: Path) -> None:
    workers = Workers(tmp_path, redis_url, provider)
    try:
        pids = workers.worker_pids()
        assert workers.proc.pid not in pids  # the supervisor serves nothing itself
        out = tmp_path / "qa.json"
        rc = qa_main(["--url", workers.url, "--sessions", "2", "--turns", "1", "--quiet",
                      "--prompt", str(fixtures_dir / "en_question.wav"), "--scenario", "skincare-sensitive-en",
                      "--json", str(out), "--reply-timeout", "15"])
        run = json.loads(out.read_text())["runs"][0]
        assert rc == 0, (run["session_results"], workers.log())
        assert all(s["error"] is None for s in run["session_results"]), run["session_results"]
        assert len(run["turns"]) == 2 and all(t["error"] is None for t in run["turns"]), run["turns"]
        assert workers.stop() == 0, workers.log()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids), "a worker outlived its supervisor"
    finally:
        workers.stop()


def test_a_dying_worker_stops_the_supervisor_and_the_other_worker(tmp_path: Path, redis_url: str) -> None:
    workers = Workers(tmp_path, redis_url, None)
    try:
        victim, other = sorted(workers.worker_pids())
        os.kill(victim, signal.SIGKILL)
        assert workers.proc.wait(30) != 0
        deadline = time.monotonic() + 10
        while _alive(other) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(other), "the surviving worker was not stopped"
        assert "worker" in workers.log() and "Traceback" not in workers.log()
    finally:
        workers.stop()
