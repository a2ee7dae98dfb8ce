"""The gateway's public paths (API version 1), in one table.

Every layer that answers, routes, counts, audits or builds a URL of the gateway's own reads its path
here: the edge (metric labels, where a browser session may be used, which answers are audited), the
object routes, the sign-in routes, and the backends and services that build gateway URLs. A path
known in two places drifts; this one cannot.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

OBJECTS = "/v1/datasets/"  # {dataset}/objects/{key}: redirect, JSON or proxied bytes
OBJECTS_MIDDLE = "objects/"  # between the dataset and the key
LOCAL = "/v1/local/"  # {dataset}/{key}?exp=&sig=: a local-disk object's bytes
CAPABILITY = "/v1/c/"  # {capability}/datasets/{dataset}/objects/{key}: an object read with a capability
RENEW = "renew"  # POST /v1/c/{capability}/renew: a fresh capability for a live one
INDEX = "index"  # GET /v1/datasets/{dataset}/index?prefix=&cursor=&limit=: a page of a dataset's objects
SDK = "/v1/sdk/gateway.js"  # the browser module vendors' pages import
SIGN = "/v1/sign"  # POST: a batch of keys
AUTH = "/v1/auth/"  # browser sign-in: the page itself is AUTH
LOGIN = AUTH + "login"
CALLBACK = AUTH + "callback"
LOGOUT = AUTH + "logout"
SESSION = AUTH + "session"
CONNECT = AUTH + "connect"  # the popup page that hands an embedder's page a capability
HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
OPENAPI = "/openapi.json"


@dataclass(frozen=True, slots=True)
class Route:
    """What the edge needs to know of a path before any route runs.

    ``label`` is the metric label (a small fixed set); ``audited`` routes leave exactly one audit
    record per request (gateway.service.audit_scope); ``action`` is the record's action until the
    use case names a more precise one; ``session`` routes are where a browser session cookie may
    be used at all (invariant 11: object reads and the sign-in routes); ``exempt`` routes are never
    shed by the concurrency limit (probes, metrics)."""

    prefix: str
    label: str
    audited: bool = False
    action: str = ""
    session: bool = False
    exempt: bool = False
    exact: bool = False
    cookieless: bool = False
    public: bool = False  # the same public file for every page: CORS "*" set by the route, none added


ROUTES: tuple[Route, ...] = (
    Route(OBJECTS, "objects", audited=True, action="redirect", session=True),
    Route(CAPABILITY, "capability", audited=True, action="redirect", cookieless=True),
    Route(LOCAL, "local", audited=True, action="fetch", cookieless=True),
    Route(SIGN, "sign", audited=True, action="sign_batch", exact=True),
    Route(CALLBACK, "auth", audited=True, action="sign_in", session=True, exact=True),
    Route(LOGOUT, "auth", audited=True, action="sign_out", session=True, exact=True),
    Route(CONNECT, "auth", audited=True, action="connect", session=True, exact=True),
    Route(AUTH, "auth", session=True),
    Route(SDK, "sdk", exact=True, public=True),
    Route(HEALTHZ, "healthz", exempt=True, exact=True),
    Route(READYZ, "readyz", exempt=True, exact=True),
    Route(METRICS, "metrics", exempt=True, exact=True),
)
OTHER = Route("", "other")
PROBES = (HEALTHZ, READYZ)  # answered whatever the Host header says (kubelet probes by IP)


def route_of(path: str) -> Route:
    """The route a path belongs to (``OTHER`` for none): a handful of prefix tests."""
    for route in ROUTES:
        if path == route.prefix if route.exact else path.startswith(route.prefix):
            return route
    return OTHER


def object_path(dataset: str, key: str) -> str:
    """``/v1/datasets/{dataset}/objects/{key}``, the key percent-encoded with its slashes kept."""
    return f"{OBJECTS}{quote(dataset, safe='')}/{OBJECTS_MIDDLE}{quote(key, safe='/')}"


def capability_path(capability: str, dataset: str, key: str) -> str:
    """``/v1/c/{capability}/datasets/{dataset}/objects/{key}``: relative URLs resolved against it
    (a .gltf's .bin) keep the capability, which a query-string credential would lose."""
    return f"{CAPABILITY}{capability}{object_path(dataset, key)[len('/v1'):]}"


def local_prefix(dataset: str) -> str:
    """``/v1/local/{dataset}/``, to which a local-disk URL appends the encoded key."""
    return f"{LOCAL}{quote(dataset, safe='')}/"
