"""The web console's HTTP side: log in, who am I, log out, and the origin rule.

- ``POST /console/login`` with ``{"token": "ttu_…"}`` (a person's login token, or the
  admin token) sets the session cookie and answers who it is and the CSRF token. The
  token travels in the body, never in a URL.
- ``GET /console/session``: the same for a browser that already holds the cookie.
- ``POST /console/logout`` (with the CSRF token) clears it.
- ``POST /console/markdown`` (with the CSRF token): ``{"texts": [...]}`` of agents' Markdown
  as ``{"html": [...]}`` sanitized by :mod:`tether.gateway.console_markdown`.
- ``GET /console/words``: what codes, run reasons and decisions mean in English and
  Chinese (:data:`tether.gateway.phrases.EXPLAINED`) and the chat's ``/`` commands, so the
  page says what the terminal and the chats say.

A one-time login link (:meth:`ConsoleHttp.login_link`: what ``tether up`` prints, and what
``console.link`` gives a client, as ``tether console`` asks for one) carries
a ``ttc_`` key in the URL's fragment, which a browser never sends: the page posts it to
``/console/login`` like a token. It logs in once, within its time, as the person it was
made for, and is kept only in this gateway's memory (as its hash).

Every one of them, and the WebSocket upgrade a cookie authenticates, must come from the
gateway's own origin: ``Origin`` equal to ``gateway.public_url``'s when that is set, else
to this request's own scheme and ``Host``. Runner credentials never log in here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from tether.errors import Forbidden, InvalidParams, TetherError, TooLarge, Unauthorized
from tether.gateway.auth import Authenticator, Principal
from tether.gateway.chat_commands import COMMANDS
from tether.gateway.console_markdown import render
from tether.gateway.console_session import COOKIE, CSRF_HEADER, ConsoleSession, ConsoleSessions
from tether.gateway.handlers import MethodHandlers
from tether.gateway.http_errors import error_response
from tether.gateway.peer import Peer
from tether.gateway.phrases import DECISIONS, EXPLAINED
from tether.protocol.methods import CONSOLE_LINK
from tether.protocol.system import ConsoleLink, Empty

__all__ = ["LINK_PREFIX", "LINK_TTL", "ConsoleHttp", "same_origin"]

log = logging.getLogger(__name__)

_MAX_LOGIN_BYTES = 4096
_MAX_MARKDOWN_BYTES = 4 * 1024 * 1024
_MAX_MARKDOWN_TEXTS = 500
LINK_PREFIX = "ttc_"
LINK_TTL = 900.0
"""Seconds a one-time login link stays good."""
_LINKS_KEPT = 32


def same_origin(request: web.Request, public_url: str | None) -> bool:
    """Whether the request's ``Origin`` is the gateway's own. Browsers leave ``Origin``
    out of same-origin GETs; for a GET or HEAD without one, the browser's own
    ``Sec-Fetch-Site: same-origin`` (a header no page can set) stands in. Else a missing
    ``Origin`` is not the gateway's."""
    origin = request.headers.get("Origin", "")
    if not origin:
        return (
            request.method in ("GET", "HEAD")
            and request.headers.get("Sec-Fetch-Site") == "same-origin"
        )
    if origin == "null":
        return False
    if public_url:
        own = urlsplit(public_url)
        expected = f"{own.scheme}://{own.netloc}"
    else:
        expected = f"{request.scheme}://{request.host}"
    return origin.lower() == expected.lower()


class ConsoleHttp:
    """See the module docstring; :meth:`routes` lists what to serve."""

    def __init__(
        self,
        sessions: ConsoleSessions,
        auth: Authenticator,
        *,
        public_url: str | None,
        secure_cookie: bool,
        server_url: Callable[[], str] = lambda: "",
    ) -> None:
        self.sessions = sessions
        self.auth = auth
        self.public_url = public_url
        self.server_url = server_url
        """Where the gateway listens, once it does (links use ``public_url`` when set)."""
        self.secure_cookie = secure_cookie
        self._links: dict[bytes, tuple[Principal, float]] = {}

    def routes(
        self,
    ) -> list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]]:
        return [
            ("POST", "/console/login", self.login),
            ("GET", "/console/session", self.session),
            ("POST", "/console/logout", self.logout),
            ("POST", "/console/markdown", self.markdown),
            ("GET", "/console/words", self.words),
        ]

    def login_link(self, base_url: str, principal: Principal, *, ttl: float = LINK_TTL) -> str:
        """A URL that logs a browser in once as ``principal`` within ``ttl`` seconds."""
        key = LINK_PREFIX + secrets.token_urlsafe(32)
        while len(self._links) >= _LINKS_KEPT:  # the oldest unused link goes first
            self._links.pop(next(iter(self._links)))
        self._links[hashlib.sha256(key.encode()).digest()] = (principal, time.time() + ttl)
        return f"{base_url.rstrip('/')}/#token={key}"

    def install(self, handlers: MethodHandlers) -> None:
        handlers.add(CONSOLE_LINK, self.link)

    def link(self, peer: Peer, params: Empty) -> ConsoleLink:
        """``console.link``: a one-time link for the caller themselves (no more than their
        own credential already opens). A runner cannot ask: the method is for clients."""
        base = (self.public_url or self.server_url()).rstrip("/") + "/"
        url = self.login_link(base, peer.principal, ttl=LINK_TTL)
        return ConsoleLink(url=url, expires_at=time.time() + LINK_TTL)

    def _redeem(self, key: str) -> Principal | None:
        found = self._links.pop(hashlib.sha256(key.encode()).digest(), None)
        if found is None or found[1] <= time.time():
            return None
        return found[0]

    async def cookie_session(self, request: web.Request) -> ConsoleSession | None:
        """The console session a request's cookie stands for, if it is valid and the
        request comes from the gateway's own origin; else None."""
        value = request.cookies.get(COOKIE)
        if not value or not same_origin(request, self.public_url):
            return None
        return await self.sessions.check(value)

    async def principal(self, request: web.Request) -> Principal | None:
        """Who a cookie-authenticated request (a WebSocket upgrade) is, or None."""
        session = await self.cookie_session(request)
        return None if session is None else session.principal

    # ---- handlers --------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.StreamResponse:
        try:
            self._from_here(request)
            token = await self._token_of(request)
            if token.startswith(LINK_PREFIX):
                principal = self._redeem(token)
            else:
                principal = await self.auth.authenticate(token) if token else None
            if principal is None or principal.user_role is None:  # runners log in elsewhere
                raise Unauthorized("invalid or revoked login token")
        except TetherError as exc:
            return _no_store(error_response(exc))
        value, session = self.sessions.issue(principal)
        response = _no_store(web.json_response(_describe(session)))
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(self.sessions.ttl),
            path="/",
            httponly=True,
            secure=self.secure_cookie,
            samesite="Strict",
        )
        log.info("console login", extra={"principal": principal.id})
        return response

    async def session(self, request: web.Request) -> web.StreamResponse:
        try:
            self._from_here(request)
            session = await self._session_or_401(request)
        except TetherError as exc:
            return _no_store(error_response(exc))
        return _no_store(web.json_response(_describe(session)))

    async def logout(self, request: web.Request) -> web.StreamResponse:
        try:
            self._from_here(request)
            session = await self._session_or_401(request)
            if not self.sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
                raise Forbidden(f"missing or wrong {CSRF_HEADER}")
        except TetherError as exc:
            return _no_store(error_response(exc))
        response = _no_store(web.json_response({"ok": True}))
        response.del_cookie(COOKIE, path="/")
        return response

    async def markdown(self, request: web.Request) -> web.StreamResponse:
        try:
            self._from_here(request)
            session = await self._session_or_401(request)
            if not self.sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
                raise Forbidden(f"missing or wrong {CSRF_HEADER}")
            texts = _texts_of(await self._json_body(request, _MAX_MARKDOWN_BYTES))
        except TetherError as exc:
            return _no_store(error_response(exc))
        html = await asyncio.to_thread(lambda: [render(text) for text in texts])
        return _no_store(web.json_response({"html": html}))

    async def words(self, request: web.Request) -> web.StreamResponse:
        try:
            self._from_here(request)
        except TetherError as exc:
            return _no_store(error_response(exc))
        return web.json_response(_WORDS, headers={"Cache-Control": "no-cache"})

    # ---- checks ----------------------------------------------------------------------

    def _from_here(self, request: web.Request) -> None:
        if not same_origin(request, self.public_url):
            raise Forbidden("the console is served only to its own origin")

    async def _session_or_401(self, request: web.Request) -> ConsoleSession:
        value = request.cookies.get(COOKIE)
        session = await self.sessions.check(value) if value else None
        if session is None:
            raise Unauthorized("not logged in (or the session expired): log in again")
        return session

    @staticmethod
    async def _json_body(request: web.Request, limit: int) -> object:
        if request.content_type != "application/json":
            raise InvalidParams("send the body as JSON")
        if request.content_length is not None and request.content_length > limit:
            raise TooLarge(f"the body is over {limit:,} bytes")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise TooLarge(f"the body is over {limit:,} bytes")
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError:
            raise InvalidParams("the body is not JSON") from None

    async def _token_of(self, request: web.Request) -> str:
        try:
            data = await self._json_body(request, _MAX_LOGIN_BYTES)
        except TooLarge:
            raise InvalidParams("the login body is too large") from None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str):
            raise InvalidParams('send the token as JSON: {"token": "…"}')
        return token.strip()


def _texts_of(data: object) -> list[str]:
    texts = data.get("texts") if isinstance(data, dict) else None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise InvalidParams('send {"texts": ["…"]}', data={"field": "texts"})
    if len(texts) > _MAX_MARKDOWN_TEXTS:
        raise TooLarge(f"at most {_MAX_MARKDOWN_TEXTS} texts at once")
    return texts


def _words() -> dict[str, object]:
    return {
        "explained": EXPLAINED,
        "decisions": DECISIONS,
        "commands": sorted(COMMANDS),
    }


_WORDS = _words()


def _describe(session: ConsoleSession) -> dict[str, object]:
    p: Principal = session.principal
    return {
        "principal": p.id,
        "name": p.name,
        "role": p.user_role,
        "csrf": session.csrf,
        "expires_at": session.expires_at,
    }


def _no_store(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Cache-Control"] = "no-store"
    return response
