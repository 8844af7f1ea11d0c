"""Production mode (dev tokens off): pages opened from a join link read the REST API with its token."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from server.auth import issue_token
from tests.browser.conftest import ServerThread, browser_settings

SECRET = "production-browser-test-secret-0123456789abcdef"


@pytest.fixture
def production_server(tmp_path: Path) -> Iterator[ServerThread]:
    settings = browser_settings(tmp_path / "data")
    settings.server.dev_tokens = False
    settings.server.secret = SECRET
    srv = ServerThread(settings).start()
    yield srv
    srv.stop()


def loaded(page: Any) -> str:
    page.wait_for_function("window.LC && LC.phase !== 'loading'")
    return str(page.evaluate("LC.phase"))


def test_join_link_token_authorizes_the_rest_pages(new_page: Callable[..., Any], production_server: ServerThread,
                                                   question_wav: Path) -> None:
    page = new_page(question_wav)
    page.goto(production_server.url + "/static/sessions.html")  # no token: refused, and it says so
    assert loaded(page) == "error"
    assert page.evaluate("LC.errors[0].reason") == "bad_token"

    mentor = issue_token(SECRET, "any-room", "mentor", "mia", 600)
    page = new_page(question_wav)
    page.goto(f"{production_server.url}/static/sessions.html?token={mentor}")
    assert loaded(page) != "error", page.evaluate("LC.errors")
    page.goto(production_server.url + "/static/sessions.html")  # same tab, link without the token
    assert loaded(page) != "error", page.evaluate("LC.errors")
