"""The cost of one ``users`` request, broken down by step, in one process (no sockets, no wrk).

    .venv/bin/python -m bench.steps [--requests 20000] [--profile]

The production-like policy of the load benchmark (Okta RS256 tokens from a local JWKS, a group rule
from office networks, an S3 dataset, audit to a file), 2,000 employees' tokens already verified, and
keys that do not repeat: what ``users`` sends. Each step is timed on its own over the same requests,
then the whole ASGI call (edge to redirect) is timed; the difference between the sum and the whole is
the glue between the steps. Numbers are CPU microseconds per request on this machine. ``--profile``
prints cProfile's top functions of the whole call instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from bench import fixtures as fx
from gateway.app import GatewayApp, create_app, freeze_startup_heap
from gateway.auth import AuthRequest
from gateway.routes import object_path
from gateway.service import AuditScope, RequestContext
from gateway.settings import Settings

USERS = 2000


def _scope(path: str, token: str) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) bench"),
               (b"accept", b"image/avif,image/webp,*/*"), (b"authorization", b"Bearer " + token.encode()),
               (b"accept-encoding", b"gzip, deflate, br"), (b"connection", b"keep-alive")]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


async def _time(n: int, run: Callable[[int], Awaitable[object]]) -> float:
    """µs of CPU per call of ``run(i)`` for i in range(n)."""
    start = time.process_time()
    for i in range(n):
        await run(i)
    return (time.process_time() - start) / n * 1e6


@contextlib.contextmanager
def gateway() -> Iterator[tuple[GatewayApp, list[str]]]:
    with tempfile.TemporaryDirectory(prefix="steps-") as tmp, contextlib.ExitStack() as stack:
        identity = fx.Identity.create()
        issuer = stack.enter_context(fx.identity_provider(identity))
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(fx.policy_yaml(issuer=issuer, audit_path=Path(tmp) / "audit.jsonl", gcs_credentials=None))
        tokens = fx.user_tokens(identity, issuer, USERS)
        with contextlib.ExitStack() as env:
            import os

            env.enter_context(_environ(AWS_ACCESS_KEY_ID=fx.AWS_ACCESS_KEY_ID,
                                       AWS_SECRET_ACCESS_KEY=fx.AWS_SECRET_ACCESS_KEY,
                                       BENCH_VENDOR_SECRET=fx.VENDOR_SECRET))
            del os
            app = create_app(Settings(config=policy, signing_key="s" * 32))
        yield app, tokens


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    import os

    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.steps", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the whole call instead")
    args = parser.parse_args(argv)
    with gateway() as (app, tokens):
        asyncio.run(measure(app, tokens, args.requests, profile=args.profile))
    return 0


async def measure(app: GatewayApp, tokens: list[str], n: int, *, profile: bool) -> None:
    """Everything on one event loop (the runtime's HTTP client belongs to it), closed at the end."""
    try:
        await _measure(app, tokens, n, profile=profile)
    finally:
        await app.runtime.aclose()


async def _measure(app: GatewayApp, tokens: list[str], n: int, *, profile: bool) -> None:
    if True:
        runtime = app.runtime
        keys = [f"images/users/{i:08d}.jpg" for i in range(4 * n)]
        paths = [object_path(fx.S3_DATASET, key) for key in keys]
        scopes = [_scope(paths[i], tokens[i % USERS]) for i in range(4 * n)]
        # Every token verified once (the users row's warm-up does the same): the token cache is hot.
        await _warm(app, scopes[:USERS])
        freeze_startup_heap()  # the server's collector settings (gateway/app/__init__.py)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await _time(n, lambda i: app.asgi(scopes[n + i], _receive, _send))
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(30)
            return
        state = runtime.holder.current
        ds = state.policy.datasets[fx.S3_DATASET]
        requests = [AuthRequest("GET", paths[i], "", dict((k.decode(), v.decode()) for k, v in scopes[i]["headers"]),
                                ip, True, "127.0.0.1") for i, ip in _ips(4 * n)]

        def ctx(i: int) -> RequestContext:
            audit = AuditScope(runtime.audit, "r", "127.0.0.1", "bench", "redirect", state.version)
            return RequestContext(requests[i], "r", state, audit)

        contexts = [ctx(i) for i in range(4 * n)]
        rows: list[tuple[str, float]] = []

        async def authenticate(i: int) -> object:
            return await state.auth.authenticate(requests[i])

        async def admit(i: int) -> object:
            return await runtime.gate.admit(contexts[i], fx.S3_DATASET, keys[i].encode(), action="redirect")

        async def sign(i: int) -> object:
            return await runtime.signer.one(state, ds, keys[n + i])

        async def presign(i: int) -> object:
            return await state.backends[ds.name].sign([keys[2 * n + i]], signed_at=1_800_000_000, expires_in=300)

        async def audit(i: int) -> object:
            contexts[i].audit.close(302, 0)
            return None

        async def whole(i: int) -> object:
            return await app.asgi(scopes[3 * n + i], _receive, _send)

        async def bare(i: int) -> object:
            await _send({"type": "http.response.start", "status": 302, "headers": []})
            return await _send({"type": "http.response.body", "body": b""})

        async def trivial(scope: dict[str, Any], receive: object, send: Callable[..., Awaitable[None]]) -> None:
            await send({"type": "http.response.start", "status": 302, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def edge_only(i: int) -> object:
            return await edge(dict(scopes[2 * n + i]), _receive, _send)

        async def route_only(i: int) -> object:
            return await edge(dict(scopes[2 * n + i]), _receive, _send)

        edge: Any = app.asgi
        routes = edge.app
        edge.app = trivial
        edge_cost = await _time(n, edge_only)
        edge.app = routes

        rows.append(("edge: context, audit scope, CORS, counts (a trivial route behind it)", edge_cost))
        rows.append(("authenticate (AuthChain, a verified token)", await _time(n, authenticate)))
        rows.append(("admit (authenticate, rules, rate, key, allow_keys)", await _time(n, admit)))
        rows.append(("sign: URL cache miss, then the S3 signer (and the put)", await _time(n, sign)))
        rows.append(("  of which the S3 presign alone", await _time(n, presign)))
        rows.append(("audit record: build, encode, enqueue", await _time(n, audit)))
        rows.append(("two ASGI messages (the floor of any answer)", await _time(n, bare)))
        total = await _time(n, whole)
        print(f"{n:,} users requests, distinct (user, key) pairs; CPU µs per request\n")
        print("| step | µs |\n|---|---:|")
        for name, cost in rows:
            print(f"| {name} | {cost:.1f} |")
        print(f"| **the whole ASGI call (edge, route, admit, sign, audit, redirect)** | **{total:.1f}** |")


def _ips(count: int) -> Iterator[tuple[int, Any]]:
    import ipaddress

    ip = ipaddress.ip_address("127.0.0.1")
    for i in range(count):
        yield i, ip


async def _warm(app: GatewayApp, scopes: list[dict[str, Any]]) -> None:
    for scope in scopes:
        await app.asgi(scope, _receive, _send)


if __name__ == "__main__":
    sys.exit(main())
