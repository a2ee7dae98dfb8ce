"""One request, as the service layer sees it: its facts parsed once at the edge, the policy snapshot
it is decided under, and its audit record.

Immutable (a NamedTuple: as cheap to build as a plain object, and nothing can write to it): every
layer reads it, none re-parses the request, and what a use case changes (a renewed session cookie)
is returned, never written back. The snapshot is taken once, at the edge, so that a policy reload in
the middle of a request can never authenticate it under one policy and decide it under another
(invariant 13).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import NamedTuple

from gateway.auth import AuthRequest
from gateway.models import IPAddress
from gateway.service.audit_scope import AuditScope
from gateway.service.state import State


class RequestContext(NamedTuple):
    request: AuthRequest  # method, raw path and query, headers, client address: what authentication reads
    request_id: str
    state: State  # the policy snapshot this request is decided under
    audit: AuditScope  # the request's one audit record, written when the answer is over

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def client_ip(self) -> IPAddress:
        return self.request.client_ip

    @property
    def client_text(self) -> str:
        return self.request.client_text

    @property
    def query(self) -> str:
        return self.request.query


def offline_context(state: State, *, client_ip: str = "127.0.0.1", method: str = "GET", path: str = "/",
                    query: str = "", headers: Mapping[str, str] | None = None, session_route: bool = False,
                    audit: AuditScope | None = None, request_id: str = "offline") -> RequestContext:
    """A context for callers without HTTP (the CLI, tests): the same facts the edge would parse."""
    ip = ipaddress.ip_address(client_ip)
    request = AuthRequest(method, path, query, dict(headers or {}), ip, session_route, str(ip))
    return RequestContext(request, request_id, state,
                          audit if audit is not None else AuditScope.detached(request_id, str(ip)))
