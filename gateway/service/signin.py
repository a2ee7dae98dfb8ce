"""Browser sign-in's use cases: start a sign-in, complete it, sign out, say who is signed in.

No HTTP types: the routes (gateway/api/auth_routes.py) hand in the query, the Cookie header and
the few request headers that matter, and get back where to send the browser and which
``Set-Cookie`` values to send with it. Every sign-in and sign-out leaves one audit record.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from gateway.auth import ReplayStore
from gateway.auth.browser_client import BrowserClient, SignInReason, idp_code, refuse
from gateway.auth.claims import principal_from_claims
from gateway.auth.cookies import SessionKeys, clear_cookie, cookie_values, set_cookie
from gateway.auth.login_tx import (
    STATE,
    TTL,
    Transaction,
    cookie_name,
    one_of_each,
    safe_return_to,
    stale_transactions,
    tx_clear_cookie,
    tx_set_cookie,
)
from gateway.auth.session_auth import check_site
from gateway.auth.sessions import COOKIE, Session, SessionStore, SessionTooLarge
from gateway.config import origin_of
from gateway.errors import CrossSiteRefused, GatewayError, SignInFailed, Unauthenticated
from gateway.metrics import Metrics
from gateway.models import ANONYMOUS, Decision, DenyReason, Principal
from gateway.routes import AUTH, LOGIN, OBJECTS
from gateway.service.context import RequestContext
from gateway.service.state import State

MAX_GROUPS = 200
_SIGNED_IN = Decision(True, rule="browser_sign_in")
_SIGNED_OUT = Decision(True, rule="browser_sign_out")


@dataclass(frozen=True, slots=True)
class Redirect:
    """Send the browser to ``location`` with these ``Set-Cookie`` values."""

    location: str
    cookies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionView:
    """What ``/v1/auth/session`` and the sign-in page show."""

    session: Session | None
    reason: str | None = None  # why there is no session: "no_session" or a refused cookie's reason


class SignInService:
    """See the module docstring. ``keys`` and ``store`` are None when no issuer has ``browser:``
    (the composition root refuses a policy with browser sign-in but no GATEWAY_SESSION_KEYS)."""

    def __init__(self, *, keys: SessionKeys | None, store: SessionStore | None, replay: ReplayStore,
                 metrics: Metrics, public_url: str, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.store = store
        self.replay = replay
        self.metrics = metrics
        self.public_url = public_url.rstrip("/")
        self.own_origin = origin_of(self.public_url) or self.public_url
        self.page = self.public_url + AUTH
        self.clock = clock

    @staticmethod
    def enabled(state: State) -> bool:
        return bool(state.browsers)

    def login_url(self, return_to: str | None = None) -> str:
        query = "?" + urlencode({"return_to": return_to}) if return_to else ""
        return f"{self.public_url}{LOGIN}{query}"

    def continue_url(self, target: str) -> str:
        return f"{self.page}?{urlencode({'next': target})}"

    def next_object(self, value: str | None) -> str | None:
        """The gateway URL of ``next`` when it is one of this gateway's object paths, else None."""
        if not value or not value.startswith(OBJECTS):
            return None
        url = safe_return_to(self.public_url + value, {self.own_origin}, "")
        return url or None

    def _client(self, state: State, name: str | None) -> BrowserClient:
        browsers = state.browsers
        client = browsers.get(name) if name else next(iter(browsers.values()), None)
        if client is None or self.keys is None:
            raise refuse(SignInReason.UNKNOWN_ISSUER, "no issuer of that name offers browser sign-in")
        return client

    # -- sign in -----------------------------------------------------------------------------
    async def begin(self, ctx: RequestContext, *, issuer: str | None, return_to: str | None) -> Redirect:
        """Where to send the browser to sign in, with a new login transaction cookie."""
        cookie_header = ctx.headers.get("cookie", "")
        if ctx.headers.get("sec-fetch-dest") not in (None, "document"):
            # An <img> or fetch() can never show a sign-in page: refusing keeps a page of images
            # from starting one sign-in each.
            raise refuse(SignInReason.NOT_TOP_LEVEL, "sign-in is a top-level navigation: open this URL in the browser")
        client = self._client(ctx.state, issuer)
        assert self.keys is not None  # noqa: S101 - _client checked it
        allowed = {*client.browser.return_origins, self.own_origin}
        tx = Transaction.start(client.issuer.name, safe_return_to(return_to, allowed, self.page), int(self.clock()))
        url = await client.authorization_url(state=tx.state, nonce=tx.nonce, verifier=tx.verifier)
        stale = [tx_clear_cookie(name) for name in stale_transactions(self.keys, cookie_header)]
        return Redirect(url, (*stale, tx_set_cookie(tx.cookie, tx.seal(self.keys))))

    async def complete(self, ctx: RequestContext) -> Redirect:
        """Check the issuer's redirect back, exchange the code, and start a new session."""
        query, cookie_header = ctx.query, ctx.headers.get("cookie", "")
        ctx.audit.action = "sign_in"
        spent: tuple[str, ...] = ()
        try:
            params = one_of_each(parse_qs(query, keep_blank_values=True), ("state", "code", "iss", "error"))
            state = params.get("state", "")
            if not STATE.match(state):
                raise refuse(SignInReason.BAD_PARAMETERS, "the callback has no valid state parameter")
            name = cookie_name(state)
            values = cookie_values(cookie_header, name)
            if len(values) != 1 or self.keys is None:
                # Login CSRF: a callback this browser did not start (or an injected code and state).
                raise refuse(SignInReason.NO_TRANSACTION, "this browser did not start this sign-in")
            spent = (tx_clear_cookie(name),)  # one use, whatever happens next
            tx = Transaction.open(self.keys, name, values[0])
            principal = await self._finish(ctx.state, tx, state, params)
            session = await self._new_session(ctx.state, tx, principal)
            assert self.store is not None  # noqa: S101 - keys and store come together
            try:
                value = await self.store.issue(session)
            except SessionTooLarge:
                raise refuse(SignInReason.SESSION_TOO_LARGE, f"the session does not fit a cookie with "
                             f"{len(session.groups)} groups; filter the groups claim at the issuer") from None
            await self._revoke_previous(ctx.state, cookie_header)
            max_age = session.expires - session.created
        except GatewayError as exc:
            reason = exc.reason if isinstance(exc, SignInFailed) else exc.code
            if isinstance(exc, SignInFailed):
                exc.set_cookies = spent
            self.metrics.sign_ins.labels(reason).inc()
            ctx.audit.decision = Decision(False, reason=reason)
            raise
        self.metrics.sign_ins.labels("ok").inc()
        ctx.audit.principal, ctx.audit.decision = session.principal, _SIGNED_IN
        return Redirect(tx.return_to, (*spent, set_cookie(COOKIE, value, max_age=max_age, same_site="None")))

    async def _finish(self, snapshot: State, tx: Transaction, state: str, params: Mapping[str, str]) -> Principal:
        # Constant time: the state is the secret that binds the callback to this browser's login.
        if not hmac.compare_digest(tx.state.encode(), state.encode()):
            raise refuse(SignInReason.BAD_STATE, "the state does not match this browser's sign-in")
        if not 0 <= self.clock() - tx.created <= TTL:
            raise refuse(SignInReason.EXPIRED_TRANSACTION, "the sign-in took too long; start again")
        # Once across every replica (with Redis): a replayed callback is refused even with its cookie.
        if not await self.replay.first_seen("signin:" + hashlib.sha256(state.encode()).hexdigest(), TTL):
            raise refuse(SignInReason.REPLAYED_STATE, "this sign-in was completed already")
        if "error" in params:
            raise refuse(SignInReason.IDP_ERROR, f"the identity provider answered {idp_code(params['error'])}")
        client = snapshot.browsers.get(tx.issuer)
        if client is None:
            raise refuse(SignInReason.UNKNOWN_ISSUER, "the issuer of this sign-in no longer offers browser sign-in")
        metadata = await client.metadata()
        iss = params.get("iss")
        # RFC 9207: the response must come from the issuer this sign-in went to (mix-up attacks).
        if (iss is None and metadata.iss_parameter) or (iss is not None and iss != client.issuer.issuer):
            raise refuse(SignInReason.WRONG_ISSUER, "the callback does not come from the issuer of this sign-in")
        code = params.get("code")
        if not code:
            raise refuse(SignInReason.BAD_PARAMETERS, "the callback has no code")
        tokens = await client.exchange(code, tx.verifier)
        claims = await client.id_token_claims(tokens, tx.nonce)
        try:
            principal = principal_from_claims(client.issuer, claims)
        except Unauthenticated as exc:
            raise refuse(SignInReason.BAD_ID_TOKEN, exc.detail) from None
        if len(principal.groups) > MAX_GROUPS:
            raise refuse(SignInReason.SESSION_TOO_LARGE, f"the ID token names {len(principal.groups)} groups; "
                         f"filter the groups claim at the issuer (at most {MAX_GROUPS})")
        return principal

    async def _new_session(self, state: State, tx: Transaction, principal: Principal) -> Session:
        client = state.browsers[tx.issuer]
        now = int(self.clock())
        # Always a new random id: a session cookie the browser brought along is never adopted.
        return Session(secrets.token_urlsafe(32), tx.issuer, principal.subject or "", principal.email,
                       tuple(sorted(principal.groups)), now, now + int(client.browser.session_ttl), now)

    async def _revoke_previous(self, state: State, cookie_header: str) -> None:
        """A new sign-in ends the browser's previous session, if it had one."""
        sessions = state.sessions
        values = cookie_values(cookie_header, COOKIE)
        if sessions is None or len(values) != 1:
            return
        try:
            old, _ = await sessions.resolve(values)
        except GatewayError:
            return
        await sessions.store.revoke(old)

    # -- sign out ----------------------------------------------------------------------------
    async def end(self, ctx: RequestContext, *, end_session: bool, return_to: str | None) -> Redirect:
        """End the session now (every replica with Redis), clear the cookie, and say where to go."""
        ctx.audit.action = "sign_out"
        origin = ctx.headers.get("origin")
        cookie_header = ctx.headers.get("cookie", "")
        source = origin_of(origin) if origin and origin != "null" else None
        # The cookie is SameSite=None, so any site could post here: only the gateway's own pages
        # and the embedders may sign a browser out (logout CSRF).
        if source is None or (source != self.own_origin and source not in ctx.state.embedders):
            ctx.audit.decision = Decision(False, reason=DenyReason.CROSS_SITE)
            raise CrossSiteRefused("sign-out is accepted only from the gateway's own pages and the embedders")
        principal, issuer = ANONYMOUS, None
        sessions = ctx.state.sessions
        values = cookie_values(cookie_header, COOKIE)
        if sessions is not None and len(values) == 1:
            try:
                session, _ = await sessions.resolve(values)
            except Unauthenticated:
                pass  # expired, revoked or not ours: nothing to end, the cookie is cleared anyway
            else:
                await sessions.store.revoke(session)
                principal, issuer = session.principal, session.issuer
        ctx.audit.principal, ctx.audit.decision = principal, _SIGNED_OUT
        cookies = (clear_cookie(COOKIE, same_site="None"),)
        client = ctx.state.browsers.get(issuer or "")
        if end_session and client is not None:
            url = await client.end_session_url(self.page)
            if url is not None:
                return Redirect(url, cookies)
        allowed = {self.own_origin, *(client.browser.return_origins if client else ())}
        return Redirect(safe_return_to(return_to, allowed, self.page), cookies)

    # -- who is signed in --------------------------------------------------------------------
    async def status(self, ctx: RequestContext, *, check_embedder: bool = True) -> SessionView:
        """The browser session of the request: for ``/v1/auth/session`` (embedders only, 403 for
        other sites) and, without the site check, for the gateway's own page."""
        request = ctx.request
        sessions = ctx.state.sessions
        values = cookie_values(request.headers.get("cookie", ""), COOKIE)
        if sessions is None or not values:
            return SessionView(None, "no_session")
        if check_embedder:
            check_site(request.headers, self.own_origin, ctx.state.embedders)
        try:
            session, _ = await sessions.resolve(values)
        except Unauthenticated as exc:
            return SessionView(None, exc.reason)
        if check_embedder:
            check_site(request.headers, self.own_origin, frozenset(sessions.browsers[session.issuer].embedders))
        return SessionView(session)

    @staticmethod
    def idle_deadline(state: State, session: Session) -> float:
        browser = state.browsers[session.issuer].browser
        return min(session.seen + browser.idle_ttl, session.expires, session.created + browser.session_ttl)
