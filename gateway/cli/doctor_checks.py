"""What ``gateway doctor`` asks a live gateway, as a vendor's browser client would, and what each
answer means. The facts behind the checks (docs/browsers.md, shared research on loaders):

- a page on the vendor's origin reads the object with CORS: the gateway's answer (a redirect or the
  bytes) must name that origin in ``Access-Control-Allow-Origin`` (``*`` only without credentials);
- a request carrying a credential header (``Authorization``, the vendor signature headers) is
  preflighted; a plain GET with one ``Range`` is not (``Range`` is CORS-safelisted);
- after the gateway's cross-origin redirect, browsers send ``Origin: null`` to the storage and drop
  ``Authorization``: the storage's CORS must allow ``null`` (``*``), or the dataset must be proxied;
- a URL presigned for GET does not answer HEAD (the method is signed), and ``Range`` must come back 206.

Nothing here prints a credential or a signed URL: a redirect target is shown as its origin only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from urllib.parse import urljoin

import httpx

from gateway.config import origin_of

REDIRECTS = (301, 302, 303, 307, 308)
_ADD = "add {} to cors.allow_origins in the policy (or GATEWAY_CORS_ORIGINS)"
Credential = Callable[[str, str], dict[str, str]]  # (method, url) -> the headers that authenticate it


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass, fail or skip
    detail: str
    fix: str | None = None

    def as_json(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class Browser:
    """The vendor's client: its page's origin, its credentials mode, and the credential it adds."""

    origin: str
    credentials: str = "omit"  # or "include" (FiftyOne's service worker, three.js withCredentials)
    credential: Credential | None = None
    credential_headers: tuple[str, ...] = ()

    def allows(self, headers: httpx.Headers, origin: str) -> bool:
        """Would the browser let the page read an answer with these headers?"""
        allowed = headers.get("access-control-allow-origin")
        if self.credentials == "include":
            return allowed == origin and str(headers.get("access-control-allow-credentials", "")).lower() == "true"
        return allowed in (origin, "*")


class Doctor:
    def __init__(self, url: str, browser: Browser, http: httpx.Client, *, min_life: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.browser = browser
        self.http = http
        self.min_life = min_life
        self.clock = clock
        self.own_origin = origin_of(url) or url

    def _send(self, method: str, url: str, origin: str | None, extra: Mapping[str, str] | None = None,
              credential: bool = True) -> httpx.Response:
        headers = {"sec-fetch-mode": "cors", "sec-fetch-dest": "empty", **(extra or {})}
        if origin is not None:
            headers["origin"] = origin
        if credential and self.browser.credential is not None:
            headers.update(self.browser.credential(method, url))
        return self.http.request(method, url, headers=headers)

    def _follow(self, method: str,
                extra: Mapping[str, str] | None = None) -> tuple[httpx.Response, httpx.Response | None, str]:
        """The gateway's answer, the redirect target's (or None), and the Origin sent to the target."""
        first = self._send(method, self.url, self.browser.origin, extra)
        if first.status_code not in REDIRECTS or "location" not in first.headers:
            return first, None, self.browser.origin
        target = urljoin(self.url, first.headers["location"])
        cross = origin_of(target) != self.own_origin
        # The Fetch standard's tainted origin: a cross-origin redirect of a cross-origin request.
        sent = "null" if cross and self.browser.origin != self.own_origin else self.browser.origin
        # Authorization (and every non-safelisted header) is dropped on a cross-origin redirect.
        second = self._send(method, target, sent, extra, credential=not cross)
        return first, second, sent

    def run(self) -> list[Check]:
        checks = [self.preflight()]
        try:
            first, second, sent = self._follow("GET")
        except httpx.HTTPError as exc:
            return [*checks, Check("reach", "fail", f"no answer from {self.own_origin} ({type(exc).__name__})",
                                   f"is the gateway running and reachable at {self.own_origin}?")]
        checks += [self.get(first), self.cors(first)]
        if first.status_code not in (200, *REDIRECTS):
            return [*checks, *(Check(name, "skip", "the gateway refused the GET") for name in
                               ("redirect-cors", "range", "head", "expiry"))]
        checks.append(self.redirect_cors(first, second, sent))
        checks.append(self.guard("range", self.range))
        checks.append(self.guard("head", self.head))
        checks.append(self.guard("expiry", lambda: self.expiry(first)))
        return checks

    def guard(self, name: str, check: Callable[[], Check]) -> Check:
        try:
            return check()
        except httpx.HTTPError as exc:
            return Check(name, "fail", f"the request failed ({type(exc).__name__})", "is the storage reachable from "
                         "here? Run doctor where the vendor's users are")

    def preflight(self) -> Check:
        if not self.browser.credential_headers:
            return Check("preflight", "skip", "no credential header: a GET, even with one Range, is not preflighted")
        wanted = [*self.browser.credential_headers, "range"]
        try:
            answer = self.http.options(self.url, headers={
                "origin": self.browser.origin, "access-control-request-method": "GET",
                "access-control-request-headers": ", ".join(wanted)})
        except httpx.HTTPError as exc:
            return Check("preflight", "fail", f"no answer ({type(exc).__name__})", "is the gateway running?")
        allowed = {h.strip().lower() for h in answer.headers.get("access-control-allow-headers", "").split(",")}
        missing = [h for h in wanted if h not in allowed and "*" not in allowed]
        if answer.status_code >= 300 or not self.browser.allows(answer.headers, self.browser.origin):
            return Check("preflight", "fail", f"OPTIONS answered {answer.status_code} without allowing "
                         f"{self.browser.origin}", _ADD.format(self.browser.origin))
        if missing:
            return Check("preflight", "fail", f"the preflight does not allow {', '.join(missing)}",
                         "upgrade the gateway, or send the credential the gateway documents")
        return Check("preflight", "pass", f"OPTIONS {answer.status_code}: GET with {', '.join(wanted)} allowed")

    def get(self, first: httpx.Response) -> Check:
        status = first.status_code
        if status in REDIRECTS:
            target = origin_of(urljoin(self.url, first.headers["location"])) or "?"
            where = "the gateway itself" if target == self.own_origin else target
            return Check("get", "pass", f"{status} to {where}")
        if status == 200:
            return Check("get", "pass", "200: the gateway serves the object itself (delivery proxy)")
        fixes = {401: "the gateway wants a credential: give the one the vendor's client sends (--bearer-env, "
                      "--key-id/--secret-env), or a rule must admit anonymous callers from the users' network",
                 403: "no rule admits this caller from this address, or the key is outside allow_keys: see "
                      "`gateway explain` and the audit record's reason",
                 404: "no such dataset (or no such object, for a proxied dataset)"}
        return Check("get", "fail", f"GET answered {status}", fixes.get(status, "see the gateway's log and audit "
                                                                            "record for this request"))

    def cors(self, first: httpx.Response) -> Check:
        origin = self.browser.origin
        if self.browser.allows(first.headers, origin):
            return Check("cors", "pass", f"the gateway's {first.status_code} allows {origin}")
        if self.browser.credentials == "include" and first.headers.get("access-control-allow-origin") == origin:
            return Check("cors", "fail", "the answer lacks Access-Control-Allow-Credentials: true, which a "
                         "credentialed request needs", f"make {origin} an embedder of browser sign-in "
                         "(auth.oidc[].browser.embedders), or have the client send no credentials")
        return Check("cors", "fail", f"the gateway's {first.status_code} has no Access-Control-Allow-Origin for "
                     f"{origin}: the page cannot read it", _ADD.format(origin))

    def redirect_cors(self, first: httpx.Response, second: httpx.Response | None, sent: str) -> Check:
        if second is None:
            return Check("redirect-cors", "skip", "no redirect: the gateway answers with the object itself")
        target = origin_of(str(second.request.url)) or "the storage"
        if second.status_code != 200:
            return Check("redirect-cors", "fail", f"{target} answered {second.status_code} to the redirect URL",
                         "check the backend's credentials and that the object exists")
        if self.browser.allows(second.headers, sent):
            return Check("redirect-cors", "pass", f"{target} allows Origin: {sent}")
        if sent == "null" and self.browser.credentials == "include":
            return Check("redirect-cors", "fail", f"{target} does not allow a credentialed read from Origin: null",
                         "a credentialed client cannot read through a redirect to the storage: use delivery: proxy")
        if sent == "null":
            return Check("redirect-cors", "fail", f"{target} has no Access-Control-Allow-Origin for Origin: null, "
                         "which browsers send after the gateway's cross-origin redirect",
                         "the bucket's CORS must allow Origin null (AllowedOrigins [\"*\"]; naming "
                         f"{self.browser.origin} is not enough) or use delivery: proxy/auto")
        return Check("redirect-cors", "fail", f"{target} does not allow {sent}",
                     _ADD.format(sent))

    def range(self) -> Check:
        first, second, _ = self._follow("GET", {"range": "bytes=0-1"})
        final = second or first
        match = re.fullmatch(r"bytes 0-([01])/(\d+)", final.headers.get("content-range", ""))
        if final.status_code == 206 and match and len(final.content) == int(match.group(1)) + 1:
            return Check("range", "pass", f"206, {final.headers['content-range']}")
        return Check("range", "fail", f"Range: bytes=0-1 answered {final.status_code} with {len(final.content)} bytes",
                     "the object's server must honour Range (video seeking, point cloud tiles): use delivery: proxy")

    def head(self) -> Check:
        first, second, _ = self._follow("HEAD")
        final = second or first
        if final.status_code == 200:
            size = final.headers.get("content-length")
            return Check("head", "pass", f"200{', ' + size + ' bytes' if size else ''}")
        where = "the storage" if second is not None else "the gateway"
        fix = ("a URL presigned for GET does not answer HEAD (the method is signed): clients that send HEAD first "
               "(Label Studio's storage docs say so) need delivery: proxy (or auto)") if second is not None else (
               "see the gateway's log for this HEAD")
        return Check("head", "fail", f"HEAD answered {final.status_code} at {where}", fix)

    def expiry(self, first: httpx.Response) -> Check:
        url = self.url + ("&" if "?" in self.url else "?") + "format=json"
        answer = self._send("GET", url, self.browser.origin, {"accept": "application/json"})
        if answer.status_code != 200:
            return Check("expiry", "skip", f"the JSON form answered {answer.status_code}")
        expires = datetime.fromisoformat(str(answer.json()["expires_at"]).replace("Z", "+00:00")).timestamp()
        left = expires - self.clock()
        cache = first.headers.get("cache-control", "")
        max_age = next((int(part.split("=")[1]) for part in cache.split(",") if part.strip().startswith("max-age=")),
                       None)
        detail = f"the URL handed out now is valid {left:.0f} s more" + (
            f"; the gateway's answer may be cached {max_age} s" if max_age is not None else "")
        if max_age is not None and max_age > left:
            return Check("expiry", "fail", detail, "a cached answer would outlive its URL: report this gateway bug")
        if left < self.min_life:
            return Check("expiry", "fail", detail, f"raise the dataset's url_ttl: a client that keeps the URL "
                         f"needs at least {self.min_life:.0f} s")
        return Check("expiry", "pass", detail)

