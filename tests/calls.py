"""Calling the service layer without HTTP, the way the edge does: one RequestContext per call, with
the policy snapshot in force and a real audit scope, closed with the status the answer would have
had (the edge closes it in production)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from gateway.app.runtime import Runtime
from gateway.errors import GatewayError
from gateway.models import SignedUrl
from gateway.service import AuditScope, BatchItem, RequestContext, offline_context

T = TypeVar("T")


class Caller:
    """A client at ``client_ip`` sending ``headers`` (a credential, say) to ``runtime``'s services."""

    def __init__(self, runtime: Runtime, *, client_ip: str = "127.0.0.1",
                 headers: Mapping[str, str] | None = None, request_id: str = "req-test") -> None:
        self.runtime = runtime
        self.client_ip = client_ip
        self.headers = dict(headers or {})
        self.request_id = request_id

    def context(self, action: str, *, path: str = "/", query: str = "", session_route: bool = True) -> RequestContext:
        state = self.runtime.holder.current
        audit = AuditScope(self.runtime.audit, self.request_id, self.client_ip, self.headers.get("user-agent", ""),
                           action, state.version)
        return offline_context(state, client_ip=self.client_ip, path=path, query=query, headers=self.headers,
                               session_route=session_route, audit=audit, request_id=self.request_id)

    async def call(self, action: str, use: Callable[[RequestContext], Awaitable[T]], ok: int) -> T:
        ctx = self.context(action)
        status = ok
        try:
            return await use(ctx)
        except GatewayError as exc:
            status = exc.status
            raise
        finally:
            ctx.audit.close(status, 0)

    async def aredirect(self, key: str, dataset: str = "local") -> tuple[SignedUrl, int]:
        async def use(ctx: RequestContext) -> tuple[SignedUrl, int]:
            url, max_age, _ = await self.runtime.use.redirects.one(ctx, dataset, key)
            return url, max_age

        return await self.call("redirect", use, 302)

    def redirect(self, key: str, dataset: str = "local") -> SignedUrl:
        return asyncio.run(self.aredirect(key, dataset))[0]

    def batch(self, keys: list[Any], dataset: str = "local") -> list[BatchItem]:
        return asyncio.run(self.call("sign_batch", lambda ctx: self.runtime.use.redirects.batch(ctx, dataset, keys),
                                     200))
