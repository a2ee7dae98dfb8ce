"""Refusals: what a caller is told when the policy says no. The audit record keeps the real reason;
the words here are chosen for who hears them."""

from __future__ import annotations

import functools

from gateway.errors import Forbidden, GatewayError, Unauthenticated
from gateway.models import Decision, DenyReason, IPAddress, RequestContext
from gateway.policy import CompiledDataset


@functools.lru_cache(maxsize=8192)
def ip_text(address: IPAddress) -> str:
    return str(address)  # ipaddress formats in Python, for every record: cache it (addresses repeat)


def anonymous_refusal(*, sign_in: bool = False) -> Unauthenticated:
    """What a caller without a credential hears for any dataset it may not read, and for a dataset
    that does not exist: the same words, so that strangers cannot list the datasets. The audit
    record keeps the real reason. With browser sign-in configured, the words say where to sign in
    (an employee reading a refused ``<img>`` in the browser's tools learns what to do)."""
    if sign_in:
        return Unauthenticated("no access without a credential (a bearer token, a signed vendor request, or a "
                               "browser session: sign in at /v1/auth/login), or from this network", reason="missing")
    return Unauthenticated("no access without a credential (a bearer token or a signed vendor request), "
                           "or from this network", reason="missing")


def refusal(ctx: RequestContext, ds: CompiledDataset, decision: Decision, *, sign_in: bool = False) -> GatewayError:
    """403 for a caller with a credential; the anonymous refusal (401) for one without, unless a
    rule admits it and only the key is not allowed."""
    if ctx.principal.anonymous and decision.reason is not DenyReason.KEY_NOT_ALLOWED:
        return anonymous_refusal(sign_in=sign_in)
    return Forbidden(deny_detail(decision), reason=decision.reason or DenyReason.NO_RULE_MATCHED)


def deny_detail(decision: Decision) -> str:
    if decision.reason is DenyReason.KEY_NOT_ALLOWED:
        return "the policy does not allow this key in this dataset"
    if decision.reason is DenyReason.NO_RULES:
        return "this dataset has no rules, so nobody may read it"
    return "no rule of this dataset allows this request"
