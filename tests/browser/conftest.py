"""Real headless Chromium ↔ livecoach server, loopback only.

Run as its own invocation: ``python -m pytest tests/browser -q``. pytest_configure moves the whole
pytest process into a private network namespace with only ``lo`` (flags in ``chromium_args``):
Chromium, the Playwright driver and the server thread are all
started later from this process, so every ICE candidate is 127.0.0.1 and nothing can leave the box.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CLONE_NEWNET = 0x40000000


def pytest_configure(config: pytest.Config) -> None:
    browser_dir = Path(__file__).resolve().parent
    outside = [a for a in config.args if not Path(a.split("::")[0]).resolve().is_relative_to(browser_dir)]
    if outside:
        # The namespace would cut every other test off Redis etc.: refuse mixed runs.
        raise pytest.UsageError(f"run tests/browser as its own pytest invocation (also got {outside})")
    if os.environ.get("LIVECOACH_BROWSER_NETNS", "1") != "0":
        if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
            raise pytest.UsageError(
                f"unshare(CLONE_NEWNET) failed (errno {ctypes.get_errno()}): needs root; "
                "or set LIVECOACH_BROWSER_NETNS=0 on a host whose only interface is lo"
            )
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    import aioice.ice

    aioice.ice.get_host_addresses = lambda **kwargs: ["127.0.0.1"]  # aioice skips 127.0.0.1


# ---- server in a thread ----------------------------------------------------------------------


def browser_settings(data_dir: Path, **coach: Any) -> Any:
    """App settings for browser tests: loopback ICE, tmp data dir, memory store, no greeting.

    The greeting is off because Chromium's fake mic starts talking 1 s after getUserMedia, which
    would barge in on it; the tests want a clean first turn.
    """
    from server.settings import load_settings

    settings = load_settings()
    settings.server.data_dir = str(data_dir)
    settings.server.redis_url = None  # the namespace has no Redis; memory + SQLite
    settings.media.ice_loopback_only = True
    settings.coach.greet = coach.pop("greet", False)
    for key, value in coach.items():
        setattr(settings.coach, key, value)
    return settings


class ServerThread:
    """``server.app.make_app`` on its own event loop in a daemon thread."""

    def __init__(self, settings: Any, port: int = 0, hooks: Any = None) -> None:
        self.settings = settings
        self.port = port
        self.hooks = hooks
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: Any = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ServerThread":
        from aiohttp import web

        from server.app import make_app

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart on the same port
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(make_app(self.settings, hooks=self.hooks), handle_signals=False)
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            assert self.loop is not None
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self.runner.setup())
                self.loop.run_until_complete(web.SockSite(self.runner, sock).start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name=f"livecoach-{self.port}", daemon=True)
        self.thread.start()
        assert started.wait(30), "server did not start in 30 s"
        if failure:
            raise failure[0]
        return self

    def warm_up_stt(self) -> None:
        """Load whisper before the first turn (the model is one per process), like a warm server."""
        if self.settings.coach.providers.stt != "whisper":
            return
        from coach.providers.whisper import WhisperSTT

        assert self.loop is not None
        stt = WhisperSTT(self.settings.coach.providers.whisper)
        asyncio.run_coroutine_threadsafe(stt.warmup(), self.loop).result(120)

    def stop(self) -> None:
        if self.loop is None or self.thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            self.loop = None


def coach_hooks() -> Any:
    """The real AI customer / stream analysis (what `livecoach serve` runs)."""
    from server.practice import CoachHooks

    return CoachHooks()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    srv = ServerThread(browser_settings(tmp_path_factory.mktemp("data")), hooks=coach_hooks()).start()
    srv.warm_up_stt()
    yield srv
    srv.stop()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerThread]]:
    """Extra servers a test may stop and restart (unreachable / reconnect tests); no AI hooks."""
    made: list[ServerThread] = []

    def make(port: int = 0) -> ServerThread:
        srv = ServerThread(browser_settings(tmp_path / f"data{len(made)}"), port=port).start()
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop()


# ---- Chromium ----------------------------------------------------------------------------------


def chromium_args(wav: Path, loop: bool, grant_media: bool = True) -> list[str]:
    capture = f"{wav.resolve()}{'' if loop else '%noloop'}"
    # Without the fake-UI flag nobody answers the permission prompt: getUserMedia is refused.
    grant = ["--use-fake-ui-for-media-stream"] if grant_media else []
    return [
        "--no-sandbox", "--disable-gpu", "--disable-quic", *grant, "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={capture}",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
    ]


@pytest.fixture(scope="session")
def playwright_sync() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser_for(playwright_sync: Any) -> Iterator[Callable[..., Any]]:
    """``browser_for(wav, loop=False, grant_media=True)``: one Chromium per fake-mic file (a launch flag)."""
    browsers: dict[tuple[str, bool, bool], Any] = {}

    def get(wav: Path, loop: bool = False, grant_media: bool = True) -> Any:
        key = (str(wav), loop, grant_media)
        if key not in browsers:
            browsers[key] = playwright_sync.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=chromium_args(wav, loop, grant_media))
        return browsers[key]

    yield get
    for b in browsers.values():
        b.close()


@pytest.fixture
def new_page(browser_for: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """``new_page(wav, loop=False, lang='en', grant_media=True)``: a page in a fresh context."""
    contexts: list[Any] = []

    def make(wav: Path, loop: bool = False, lang: str = "en", grant_media: bool = True) -> Any:
        # bypass_csp: Playwright's wait_for_function evaluates its predicate with eval, which the
        # pages' CSP (script-src 'self') forbids; the pages' own scripts still obey it.
        ctx = browser_for(wav, loop, grant_media).new_context(
            viewport={"width": 1200, "height": 860}, locale="en-US", bypass_csp=True)
        ctx.add_init_script(  # first visit only: later pages keep what the user switched to
            f"try {{ if (!localStorage.getItem('lc.lang')) localStorage.setItem('lc.lang', '{lang}') }} catch (e) {{}}")
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        logs: list[str] = []
        page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))
        page.console_log = logs  # type: ignore[attr-defined]  # shown by tests on failure
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def poll(page: Any, js: str, timeout_s: float = 20.0, every_s: float = 0.25) -> Any:
    """Evaluate (possibly async) ``js`` until it returns something truthy.

    page.wait_for_function would treat an async predicate's Promise as truthy at once.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(js)
        if value or time.monotonic() > deadline:
            return value
        page.wait_for_timeout(every_s * 1000)


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


# ---- audio fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def question_wav(fixtures_dir: Path) -> Path:
    return fixtures_dir / "en_question.wav"


@pytest.fixture(scope="session")
def measured() -> dict[str, Any]:
    """Figures one test hands to a later one (e.g. reply latency → barge-in timing)."""
    return {}
