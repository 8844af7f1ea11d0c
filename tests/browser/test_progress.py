"""Progress page: trend chart, before/after a training date, session table, exports (real Chromium + server).

Three finished practice sessions of improving quality are written into the store (SQLite under the
test data dir) before the server starts, exactly as the server would have saved them.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.browser.conftest import ServerThread, browser_settings, poll
from tests.test_training import practice_log

USER = "trainee-pat"
DAYS = ["2026-10-01", "2026-10-15", "2026-11-01"]
SPLIT = "2026-10-08"  # between session 1 and session 2
DIMS = ("knowledge", "skill", "response", "composure")
ANSWERS = [  # worse → better: fillers drop, script keywords and objection handling appear
    "um um um it is, uh, fine I think, um",
    "yes it is fragrance free and um gentle",
    "yes, it is fragrance free, dermatologist tested, with a patch test guide and a 7-day return",
]



async def _seed(settings: Any) -> list[dict[str, Any]]:
    from coach.report import build_report
    from server.practice import load_session_scenario
    from server.store import open_store

    scenario = load_session_scenario(settings, "skincare-sensitive-en")
    store, bus = await open_store(settings.server, "seed")
    records = []
    try:
        for i, (answer, day) in enumerate(zip(ANSWERS, DAYS)):
            started = calendar.timegm(time.strptime(day, "%Y-%m-%d")) + 10 * 3600  # 10:00 UTC
            record = {"session_id": f"prog{i}-{time.perf_counter_ns()}", "user": USER, "room": f"r{i}",
                      "kind": "practice", "started_at": started, "ended_at": started + 12,
                      "scenario": scenario.id, "language": "en", "status": "ended"}
            record["report"] = build_report(record, practice_log(started, answer, 900 - 200 * i, USER), scenario)
            await store.save_session(record)
            records.append(record)
    finally:
        await bus.close()
        await store.close()
    return records


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[ServerThread, list[dict[str, Any]]]]:
    settings = browser_settings(tmp_path / "data")
    # Playwright's sync API keeps an event loop on this thread: seed from a thread of our own.
    with ThreadPoolExecutor(1) as pool:
        records = pool.submit(asyncio.run, _seed(settings)).result(30)
    srv = ServerThread(settings).start()
    yield srv, records
    srv.stop()


def test_progress_page_shows_trend_compare_and_exports(seeded: Any, new_page: Callable[..., Any],
                                                       question_wav: Path, shot: Callable[..., Path]) -> None:
    srv, records = seeded
    page = new_page(question_wav)
    page.goto(f"{srv.url}/static/progress.html?user={USER}")
    assert poll(page, "LC.phase === 'ready'", 15), page.console_log
    assert page.locator("#user").input_value() == USER
    assert page.evaluate("LC.progress.sessions") == 3
    # Chart: one line per dimension (+ overall), three points each, in session order.
    for dim in (*DIMS, "overall"):
        assert page.locator(f'#chart g.line[data-dim="{dim}"] circle.pt').count() == 3, dim
    knowledge_scores = page.locator('#chart g.line[data-dim="knowledge"] circle.pt').evaluate_all(
        "els => els.map(e => Number(e.dataset.score))")
    assert knowledge_scores == sorted(knowledge_scores) and knowledge_scores[-1] > knowledge_scores[0]
    assert page.locator("#chart svg text.legend").count() == 5
    assert page.locator("#compare").is_hidden()  # no training date yet
    # Trend arrows: knowledge and skill improve over the three sessions.
    for dim in ("knowledge", "skill"):
        trend = page.locator(f'.trend[data-dim="{dim}"]')
        assert "up" in trend.get_attribute("class"), dim
        assert float(trend.get_attribute("data-slope")) > 0
    # Session table: newest first, with a link to each session page.
    rows = page.locator("#sessions tbody tr")
    assert rows.count() == 3
    assert rows.first.locator("td").first.inner_text() == DAYS[-1]
    assert rows.first.locator("a").get_attribute("href") == f"/static/session.html?id={records[-1]['session_id']}"
    assert rows.first.locator("td.score-overall").inner_text() == str(round(records[-1]["report"]["overall"]))

    # Training date between sessions 1 and 2 → before/after means and a positive delta.
    page.fill("#split", SPLIT)
    page.dispatch_event("#split", "change")
    assert poll(page, f"LC.phase === 'ready' && LC.progress.split_date === '{SPLIT}'", 15), page.console_log
    assert page.locator("#compare").is_visible()
    assert page.locator("#chart line.split").count() == 1
    for dim in ("knowledge", "skill"):
        row = page.locator(f'#compare tr[data-dim="{dim}"]')
        delta = float(row.get_attribute("data-delta"))
        entry = page.evaluate(f"LC.progress.dimensions.{dim}")
        assert entry["before_n"] == 1 and entry["after_n"] == 2
        assert delta > 0 and delta == entry["delta"]
        cell = row.locator("td.delta")
        assert "up" in cell.get_attribute("class") and cell.inner_text().startswith("+")
        assert cell.evaluate("e => getComputedStyle(e).color") == "rgb(46, 157, 91)"  # --ok green
    assert f"split={SPLIT}" in page.url  # shareable address

    # Exports answer 200 from the page, with the trainee's data.
    exports = page.evaluate("""async () => Promise.all([...document.querySelectorAll('.exports a')].map(async (a) => {
        const r = await fetch(a.href); return { id: a.id, status: r.status, type: r.headers.get('content-type'),
                                                 body: await r.text() }; }))""")
    by_id = {e["id"]: e for e in exports}
    assert {e["status"] for e in exports} == {200}, exports
    assert by_id["export-sessions"]["type"].startswith("text/csv")
    assert len(by_id["export-sessions"]["body"].strip().splitlines()) == 4  # header + 3
    assert len(by_id["export-metrics"]["body"].strip().splitlines()) == 4
    assert '"delta"' in by_id["export-json"]["body"] and f'"user": "{USER}"' in by_id["export-json"]["body"]
    shot(page, "progress")

    page.select_option("#lang-switch", "zh")  # chart legend and labels re-translate
    assert page.locator("h1").inner_text() == "学员成长"
    assert "知识" in page.locator("#chart svg").inner_html()
    page.select_option("#lang-switch", "en")


def test_progress_empty_and_error_states(seeded: Any, new_page: Callable[..., Any], question_wav: Path) -> None:
    srv, _ = seeded
    page = new_page(question_wav)
    page.goto(f"{srv.url}/static/progress.html?user=nobody")  # valid id, no sessions
    assert poll(page, "LC.phase === 'empty'", 15), page.console_log
    assert page.locator("#empty").inner_text() == "No finished sessions for nobody yet."
    assert page.locator("#content").is_hidden()
    options = page.locator("#user option").evaluate_all("els => els.map(e => e.value)")
    assert options == ["nobody", USER]
    page.select_option("#user", USER)  # picking a trainee loads them
    assert poll(page, "LC.phase === 'ready' && LC.user === 'trainee-pat'", 15)

    page.goto(f"{srv.url}/static/progress.html?user=bad%20id!")  # the server refuses the id
    assert poll(page, "LC.phase === 'error'", 15)
    banner = page.locator('#banners .banner[data-reason="http"]')
    assert "bad user id" in banner.inner_text()

    page.goto(f"{srv.url}/static/sessions.html")  # sessions page links each trainee's progress
    link = page.locator(f'#trainees a[data-user="{USER}"]')
    link.wait_for()
    link.click()
    page.wait_for_url(f"**/static/progress.html?user={USER}")
    assert poll(page, "LC.phase === 'ready'", 15)
    assert page.locator("header nav a.active").get_attribute("href") == "/static/progress.html"
