"""Who may read the REST API.

With ``server.dev_tokens`` on (the embedded default) the API is open, like the dev token
endpoint. Off (production), every ``/api/`` read needs a join token (``Authorization: Bearer T``
or ``?token=T``): mentors and QA read everything; a trainee or streamer reads only their own
sessions, progress and exports.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from server.auth import TokenClaims, TokenError, verify_token
from server.state import json_error, store_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# No personal data; /api/dev/token answers 404 itself when dev tokens are off.
OPEN_PATHS = frozenset({"/api/clock", "/api/scenarios", "/api/dev/token", "/api/turn-stages"})
READ_ALL_ROLES = frozenset({"mentor", "qa"})


def _token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query.get("token")


async def _owner_of(request: web.Request) -> str | None:
    """The user a request is about: the path's user, a session record's user, or — only on list
    routes whose handler filters by it — the ``?user=`` query."""
    if "user" in request.match_info:
        return request.match_info["user"]
    if "session_id" in request.match_info:
        record = await store_of(request).get_session(request.match_info["session_id"])
        return record.get("user") if record else None
    if request.path in USER_SCOPED_LISTS:
        return request.query.get("user")
    return None


# List routes that return only the ``?user=`` given: asking for your own user is reading your own.
USER_SCOPED_LISTS = frozenset({"/api/sessions", "/api/export/sessions.csv", "/api/export/metrics.csv"})


async def may_read_request(request: web.Request, claims: TokenClaims) -> bool:
    """Authorization from the token only: a room's presence is for its members (and mentors/QA);
    records are for their user (and mentors/QA). No query parameter widens it."""
    if claims.role in READ_ALL_ROLES:
        return True
    if "room_id" in request.match_info:
        return request.match_info["room_id"] == claims.room
    return may_read(claims, await _owner_of(request))


def may_read(claims: TokenClaims, owner: str | None) -> bool:
    return claims.role in READ_ALL_ROLES or (owner is not None and owner == claims.user)


def reader_claims(request: web.Request, secret: str) -> TokenClaims | None:
    """The claims of a valid mentor/QA token on ``request`` (operational views), else None."""
    token = _token(request)
    if not token:
        return None
    try:
        claims = verify_token(secret, token)
    except TokenError:
        return None
    return claims if claims.role in READ_ALL_ROLES else None


def make_api_auth(secret: str, open_api: bool) -> Middleware:
    @web.middleware  # on the /api/ sub-app only
    async def api_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if open_api or request.path in OPEN_PATHS:
            return await handler(request)
        token = _token(request)
        if not token:
            return json_error(401, "bad_token", "this API needs a token (Authorization: Bearer …)")
        try:
            claims = verify_token(secret, token)
        except TokenError as exc:
            return json_error(401, exc.reason, str(exc))
        if not await may_read_request(request, claims):
            return json_error(403, "forbidden", f"a {claims.role} token reads only its own sessions")
        return await handler(request)

    return api_auth
