"""Pages and reports carry a CSP without inline script, nosniff and no-referrer."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from server.app import make_app
from server.settings import load_settings


async def test_pages_and_api_have_security_headers(aiohttp_server, tmp_path: Path) -> None:
    settings = load_settings(server={"data_dir": str(tmp_path)})
    server = await aiohttp_server(make_app(settings))
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/static/practice.html", "/static/js/common.js", "/api/scenarios", "/healthz"):
            async with http.get(server.make_url(path)) as resp:
                assert resp.status == 200, path
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                assert resp.headers["Referrer-Policy"] == "no-referrer"
                if resp.content_type == "text/html":
                    csp = resp.headers["Content-Security-Policy"]
                    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_no_page_has_an_inline_script() -> None:
    pages = Path(__file__).resolve().parents[1] / "web_client"
    for page in pages.glob("*.html"):
        html = page.read_text(encoding="utf-8")
        for chunk in html.split("<script")[1:]:
            assert "src=" in chunk.split(">")[0], f"{page.name} has an inline <script> (the CSP forbids it)"
