"""A reconnect after a server restart keeps the sessions apart; every page in zh and en has no
untranslated string (the rendered text is compared with the dictionaries) and is photographed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from conftest import ServerThread


def test_reconnect_after_restart_announces_a_new_session(new_page: Callable[..., Any],
                                                         server_factory: Callable[..., ServerThread],
                                                         question_wav: Path, shot: Callable[..., Path]) -> None:
    srv = server_factory()
    page = new_page(question_wav, loop=True)
    page.goto(srv.url + "/static/practice.html?scenario=skincare-sensitive-en&room=restart-1")
    page.fill("#name", "ria")
    page.click("#start")
    page.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)
    first = page.evaluate("LC.session_id")
    assert first
    port = srv.port
    srv.stop()
    page.wait_for_function("window.LC && LC.phase === 'reconnecting'", timeout=15_000)
    server_factory(port=port)  # the restarted server knows nothing of the old session
    page.wait_for_function("window.LC && LC.phase === 'connected'", timeout=30_000)
    banner = page.locator('.banner[data-reason="new_session"]')
    banner.wait_for()
    assert "new session began" in banner.inner_text()
    second = page.evaluate("LC.session_id")
    assert second and second != first
    assert page.evaluate("LC.previousSessions") == [first]
    assert page.evaluate("LC.sessionIds") == [first, second]
    assert page.locator("#transcript li").count() == 0  # the old session's lines are not merged in
    shot(page, "practice-new-session-en")
    page.select_option("#lang-switch", "zh")
    assert "新的一场" in banner.inner_text()
    page.click("#stop")


# Latin words that are the same in both languages (product names, formats, the language picker).
LATIN_OK = ("livecoach", "English", "JSON", "CSV", "WebRTC", "AI")

CHECK_JS = """async (latinOk) => {
  const m = await import('/static/i18n.js');
  const lang = m.getLang();
  const { en, zh } = m.DICTIONARY;
  const keys = new Set(Object.keys(en));
  const englishOnly = new Set(Object.keys(en).filter((k) => en[k] !== zh[k] && !en[k].includes('{')).map((k) => en[k]));
  const visible = (el) => !!(el && (el.offsetParent || el.getClientRects().length));
  const bad = [];
  for (const el of document.querySelectorAll('[data-i18n]')) {
    if (!visible(el)) continue;
    const key = el.dataset.i18n;
    const vars = el.dataset.i18nVars ? JSON.parse(el.dataset.i18nVars) : {};
    if (!keys.has(key)) bad.push(`unknown key ${key}`);
    else if (el.textContent !== m.t(key, vars)) bad.push(`stale ${key}: ${el.textContent}`);
  }
  for (const el of document.querySelectorAll('[data-i18n-placeholder]')) {
    if (el.placeholder !== m.t(el.dataset.i18nPlaceholder)) bad.push(`placeholder ${el.dataset.i18nPlaceholder}`);
  }
  const chrome = 'h1, h2, h3, th, label, button, dt, .pill, .banner, .tile, nav, [data-i18n]';
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const text = walker.currentNode.textContent.trim();
    const el = walker.currentNode.parentElement;
    if (!text || !visible(el) || el.closest('script, style')) continue;
    if (keys.has(text) || /^(err|status|alert|metric|health|mentor|session)\\.[a-z_.]+$/.test(text)) bad.push(`raw key: ${text}`);
    if (lang !== 'zh') continue;
    if (englishOnly.has(text)) bad.push(`English: ${text}`);
    if (el.closest(chrome) && !el.closest('[data-user-content]')) { // names, titles: the user's words
      const words = (text.match(/[A-Za-z]{3,}/g) || []).filter((w) => !latinOk.includes(w));
      if (words.length) bad.push(`latin in UI: ${text}`);
    }
  }
  return bad;
}"""

PAGES = ("index", "practice", "stream", "mentor", "sessions", "session", "progress")


def test_every_page_in_both_languages_is_translated(new_page: Callable[..., Any], server: ServerThread,
                                                    question_wav: Path, shot: Callable[..., Path]) -> None:
    # A finished shadowed stream, so the session pages have something to show.
    streamer = new_page(question_wav, loop=True)
    streamer.goto(server.url + "/static/stream.html?room=i18n-demo")
    streamer.fill("#name", "lin")
    streamer.click("#start")
    streamer.wait_for_function("window.LC && LC.phase === 'connected'", timeout=20_000)
    streamer.wait_for_timeout(2500)
    session_id = streamer.evaluate("LC.session_id")
    streamer.click("#stop")
    urls = {
        "index": "/", "practice": "/static/practice.html", "stream": "/static/stream.html",
        "mentor": "/static/mentor.html", "sessions": "/static/sessions.html",
        "session": f"/static/session.html?id={session_id}", "progress": "/static/progress.html?user=lin",
    }
    problems: dict[str, list[str]] = {}
    for lang in ("en", "zh"):
        page = new_page(question_wav, lang=lang)
        for name in PAGES:
            page.goto(server.url + urls[name])
            page.wait_for_load_state("networkidle")
            if name in ("sessions", "session", "progress"):
                page.wait_for_function("window.LC && LC.phase !== 'loading'", timeout=15_000)
            bad = page.evaluate(CHECK_JS, list(LATIN_OK))
            if bad:
                problems[f"{name}-{lang}"] = bad
            shot(page, f"{name}-{lang}")
    assert not problems, problems
