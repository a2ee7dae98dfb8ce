"""The service layer: the one admit step, the use cases and the request's audit record. No HTTP types,
so the CLI and the tests call it directly."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.audit.log import AuditLog
from gateway.service.admit import Admitted, Gate, KeyVerdict
from gateway.service.audit_scope import AuditScope
from gateway.service.context import RequestContext, offline_context
from gateway.service.delivery import Delivery, ProxyReads, ReadRequest
from gateway.service.gateway_urls import GatewayUrls
from gateway.service.listing import Listings
from gateway.service.local import LocalFile, LocalReads
from gateway.service.redirects import BatchItem, Redirects
from gateway.service.signin import SignInService
from gateway.service.state import State, StateHolder
from gateway.service.url_signature import UrlSignature, url_signature


@dataclass(frozen=True)
class UseCases:
    """Everything the HTTP layer calls, built once by the composition root."""

    holder: StateHolder
    audit: AuditLog
    gate: Gate
    redirects: Redirects
    proxy: ProxyReads
    local: LocalReads
    signin: SignInService
    listings: Listings


__all__ = ["Admitted", "AuditScope", "BatchItem", "Delivery", "Gate", "GatewayUrls", "KeyVerdict", "Listings",
           "LocalFile", "LocalReads", "ProxyReads", "ReadRequest", "Redirects", "RequestContext", "SignInService",
           "State", "StateHolder", "UrlSignature", "UseCases", "offline_context", "url_signature"]
