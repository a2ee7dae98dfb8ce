"""The browser session as a credential: the ``__Host-gateway_session`` cookie.

Accepted only where a browser can do no harm with it (invariant 11): GET and HEAD of the object
routes and of ``/v1/auth/session``; and from another site only when that site is a configured
embedder. Anything else that carries the cookie is refused (401 or 403), never treated as
anonymous: a request that sends a session means to use it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from gateway.auth import AuthRequest, Identity
from gateway.auth.cookies import cookie_values, set_cookie
from gateway.auth.sessions import COOKIE, Session, SessionInvalid, SessionReason, SessionStore
from gateway.config import BrowserSignIn, origin_of
from gateway.errors import CrossSiteRefused, Unauthenticated

SCHEME = "Session"
_COOKIE_EQ = COOKIE + "="
_DETAILS = {
    SessionReason.MALFORMED: "the session cookie is not one this gateway issued; sign in again",
    SessionReason.UNKNOWN_KEY: "the session cookie was sealed with a key this gateway no longer has; sign in again",
    SessionReason.TAMPERED: "the session cookie was changed; sign in again",
    SessionReason.DUPLICATE: "the request carries more than one session cookie",
    SessionReason.EXPIRED: "the browser session has expired; sign in again",
    SessionReason.IDLE: "the browser session ended after being idle; sign in again",
    SessionReason.REVOKED: "the browser session has ended (signed out); sign in again",
    SessionReason.UNKNOWN_ISSUER: "the browser session's issuer no longer offers browser sign-in",
    SessionReason.WRONG_ROUTE: "a browser session is accepted only on GET and HEAD of objects and /v1/auth/session",
}


def session_failure(reason: SessionReason) -> Unauthenticated:
    return Unauthenticated(_DETAILS[reason], scheme=SCHEME, reason=str(reason))


def check_site(headers: Mapping[str, str], own_origin: str, embedders: frozenset[str]) -> None:
    """Refuse (403) a request made by a page of another site unless that site is an embedder.

    ``Sec-Fetch-Site`` (set by the browser; no page can forge it) says whether the request is
    cross-site; ``Origin``, else ``Referer``, says which site. ``same-origin`` and ``none`` (the
    user's own navigation: address bar, bookmark) pass. A request that says nothing at all (no
    Sec-Fetch-Site, Origin or Referer, as with ``<img referrerpolicy=no-referrer>`` in a browser
    without Fetch Metadata) fails closed, and so does a cross-site one whose site is unknown."""
    site = headers.get("sec-fetch-site")
    if site == "same-origin" or site == "none":
        return
    origin = headers.get("origin")
    source = origin_of(origin) if origin and origin != "null" else None
    if source is None:
        referer = headers.get("referer")
        source = origin_of(referer) if referer else None
    if source is not None and (source == own_origin or source in embedders):
        return
    if site is None and source is None:
        raise CrossSiteRefused("the request does not say which page made it (no Sec-Fetch-Site, Origin or "
                               "Referer); a browser session is accepted only from pages that say so")
    raise CrossSiteRefused("a page on this site may not use the gateway session: it is not an embedder")


class SessionAuthenticator:
    """Turns the session cookie into the signed-in principal (see the module docstring)."""

    reads_authorization = False

    def __init__(self, store: SessionStore, browsers: Mapping[str, BrowserSignIn], *, own_origin: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.browsers = dict(browsers)
        self.own_origin = own_origin
        self._clock = clock
        self._embedders = {name: frozenset(b.embedders) for name, b in self.browsers.items()}
        self._any_embedder = frozenset().union(*self._embedders.values())

    def carries(self, request: AuthRequest) -> bool:
        # The substring test first: a request without the cookie pays one lookup and no parsing.
        header = request.headers.get("cookie")
        return header is not None and _COOKIE_EQ in header and bool(cookie_values(header, COOKIE))

    async def authenticate(self, request: AuthRequest) -> Identity | None:
        header = request.headers.get("cookie")
        if header is None or _COOKIE_EQ not in header:
            return None
        values = cookie_values(header, COOKIE)
        if not values:
            return None
        if not request.session_route or request.method not in ("GET", "HEAD"):
            raise session_failure(SessionReason.WRONG_ROUTE)
        # The site first, with every embedder: a foreign page learns nothing about the cookie.
        check_site(request.headers, self.own_origin, self._any_embedder)
        session, browser = await self.resolve(values)
        check_site(request.headers, self.own_origin, self._embedders[session.issuer])
        now = int(self._clock())
        renewal = None
        if now - session.seen >= browser.idle_ttl / 4:
            # The idle clock moves on a few times per idle period, not on every request.
            value = await self.store.touch(session, now)
            if value is not None:
                renewal = set_cookie(COOKIE, value, max_age=session.expires - now, same_site="None")
        return Identity(session.principal, renewal)

    async def resolve(self, values: list[str]) -> tuple[Session, BrowserSignIn]:
        """The live session these cookie values (from one request) name; Unauthenticated otherwise."""
        if len(values) != 1:
            raise session_failure(SessionReason.DUPLICATE)
        try:
            session = await self.store.load(values[0])
        except SessionInvalid as exc:
            raise session_failure(exc.reason) from None
        browser = self.browsers.get(session.issuer)
        if browser is None:
            raise session_failure(SessionReason.UNKNOWN_ISSUER)
        now = self._clock()
        # The configuration in force decides: shortening session_ttl shortens running sessions.
        if now >= min(session.expires, session.created + browser.session_ttl):
            raise session_failure(SessionReason.EXPIRED)
        if now >= session.seen + browser.idle_ttl:
            raise session_failure(SessionReason.IDLE)
        return session, browser
