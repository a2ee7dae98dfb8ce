"""The gateway's error tree. Each class carries its HTTP status and a stable code.

Nothing outside the HTTP layer turns these into responses; foreign exceptions are
translated into them where they enter (``raise X from exc``).
"""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, detail: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code.replace("_", " ")
        self.retry_after = retry_after


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class InvalidKey(BadRequest):
    code = "invalid_key"


class Unauthenticated(GatewayError):
    """A credential of a known scheme that is missing, malformed or wrong (never falls through)."""

    status = 401
    code = "unauthenticated"

    def __init__(self, detail: str = "", *, scheme: str = "Bearer", reason: str = "invalid") -> None:
        super().__init__(detail)
        self.scheme = scheme
        self.reason = reason


class AmbiguousCredentials(Unauthenticated):
    """A request that carries two credentials: refused, never decided by one of them."""

    code = "ambiguous_credentials"

    def __init__(self, detail: str = "", *, scheme: str = "Bearer") -> None:
        super().__init__(detail, scheme=scheme, reason="ambiguous")


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"

    def __init__(self, detail: str = "", *, reason: str = "no_rule_matched") -> None:
        super().__init__(detail)
        self.reason = reason


class CrossSiteRefused(Forbidden):
    """A browser session sent by a page of a site that is not a configured embedder."""

    code = "cross_site_refused"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail, reason="cross_site")


class SignInFailed(BadRequest):
    """A browser sign-in that cannot complete; ``reason`` is one of a fixed set (audit, metrics)."""

    code = "sign_in_failed"

    def __init__(self, detail: str = "", *, reason: str = "invalid") -> None:
        super().__init__(detail)
        self.reason = reason
        self.set_cookies: tuple[str, ...] = ()  # Set-Cookie values the answer must carry (the spent login)


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class UnknownDataset(NotFound):
    code = "unknown_dataset"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, detail: str = "", *, allow: str = "GET, HEAD, OPTIONS") -> None:
        super().__init__(detail)
        self.allow = allow


class RequestTimeout(GatewayError):
    """The client did not send its request (body) in time."""

    status = 408
    code = "request_timeout"


class ClientClosedRequest(GatewayError):
    """The client went away before its request arrived; nobody is left to answer (nginx's 499)."""

    status = 499
    code = "client_closed_request"


class MisdirectedRequest(GatewayError):
    """A ``Host`` this gateway does not serve (DNS rebinding, a stray name)."""

    status = 421
    code = "host_not_allowed"


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(GatewayError):
    status = 413
    code = "batch_too_large"


class RangeNotSatisfiable(GatewayError):
    status = 416
    code = "range_not_satisfiable"

    def __init__(self, detail: str = "", *, size: int = 0) -> None:
        super().__init__(detail)
        self.size = size


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"


class Unavailable(GatewayError):
    """A backend, identity provider or sink cannot be reached; always carries Retry-After."""

    status = 503
    code = "unavailable"

    def __init__(self, detail: str = "", *, retry_after: int | None = 5) -> None:
        super().__init__(detail, retry_after=retry_after)


class BadGateway(GatewayError):
    """The storage refused the gateway's own request (its credentials, its signature) in proxy mode."""

    status = 502
    code = "upstream_refused"


class GatewayTimeout(GatewayError):
    """The storage did not answer in time in proxy mode."""

    status = 504
    code = "upstream_timeout"


class ConfigError(Exception):
    """A config file that does not validate. ``problems`` lists every problem with its location."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems
