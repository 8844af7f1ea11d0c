"""Security headers on every response: pages and reports may run only their own scripts.

Applied in ``on_response_prepare`` so static files, errors and reports all get them. The join
token travels in page URLs, so no Referer may carry it elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from server.limits import KeyedLimiter
from server.state import json_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Pages: scripts only from this origin (no inline script), media and data from here or blobs,
# WebSocket/fetch only back to this origin. Inline styles stay allowed (CSSOM-heavy charts).
PAGE_CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "form-action 'self'",
])

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def add_security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)


def install(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)


def make_rest_rate_limit(rate: float, burst: float) -> Middleware:
    """Per client address token bucket for the REST sub-app: 429 + Retry-After past it."""
    limiter = KeyedLimiter(rate, burst)

    @web.middleware
    async def rest_rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        bucket = limiter.bucket(request.remote or "unknown")
        if not bucket.take():
            wait = max(1, round(bucket.retry_after()))
            return json_error(429, "rate_limited", "too many requests from this address, slow down",
                              {"Retry-After": str(wait)})
        return await handler(request)

    return rest_rate_limit
