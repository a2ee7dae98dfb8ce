"""Refusals: what a caller is told when it is not let in. The audit record keeps the real reason;
the words here are chosen for who hears them, so that an answer never tells a caller more than the
policy lets it know (invariant 14).

A *stranger* to a dataset is a caller that no rule of it admits, whatever the key: it hears the same
for a dataset that does not exist as for one it may not read, and is refused before its key, its URL
or its rate is looked at, so none of those can tell it more. A gateway URL or a local-disk URL is its
own credential: every way it can fail to prove itself (a wrong signature, another object, another
address, another dataset, a dataset that is not served that way) is one answer.
"""

from __future__ import annotations

import functools

from gateway.errors import Forbidden, GatewayError, Unauthenticated, UnknownDataset
from gateway.models import Decision, DenyReason, IPAddress, Principal


@functools.lru_cache(maxsize=8192)
def ip_text(address: IPAddress) -> str:
    return str(address)  # ipaddress formats in Python, for every record: cache it (addresses repeat)


def anonymous_refusal(*, sign_in: bool = False) -> Unauthenticated:
    """What a caller without a credential hears for any dataset it may not read, and for a dataset
    that does not exist: the same words, so that strangers cannot list the datasets. With browser
    sign-in configured, the words say where to sign in (an employee reading a refused ``<img>`` in
    the browser's tools learns what to do)."""
    if sign_in:
        return Unauthenticated("no access without a credential (a bearer token, a signed vendor request, or a "
                               "browser session: sign in at /v1/auth/login), or from this network", reason="missing")
    return Unauthenticated("no access without a credential (a bearer token or a signed vendor request), "
                           "or from this network", reason="missing")


def stranger_refusal(principal: Principal, *, known: bool, sign_in: bool) -> GatewayError:
    """No rule admits this caller. Without a credential: the anonymous refusal (401), for a known and
    an unknown dataset alike. With one: 403 for a dataset that exists, 404 for one that does not (an
    authenticated caller is audited by name, and learns only whether a dataset name exists)."""
    if principal.anonymous:
        return anonymous_refusal(sign_in=sign_in)
    if not known:
        return UnknownDataset("there is no dataset of that name")
    return Forbidden("no rule of this dataset allows this request", reason=DenyReason.NO_RULE_MATCHED)


def url_refusal() -> Forbidden:
    """Every way a signed URL fails to prove itself, in one answer."""
    return Forbidden("this URL is not valid: it was altered, is for another object, or was issued to another "
                     "address; ask the gateway for a new one", reason=DenyReason.BAD_SIGNATURE)


def expired_refusal() -> Forbidden:
    """A URL the gateway did issue, past its expiry: its holder may know that much."""
    return Forbidden("the URL has expired; ask the gateway for a new one", reason=DenyReason.EXPIRED)


def deny_detail(decision: Decision) -> str:
    if decision.reason is DenyReason.KEY_NOT_ALLOWED:
        return "the policy does not allow this key in this dataset"
    if decision.reason is DenyReason.NO_RULES:
        return "this dataset has no rules, so nobody may read it"
    return "no rule of this dataset allows this request"
