"""The gateway as browsers meet it: HTTPS on its own site (``https://127.0.0.1:<port>``) with a leaf of
the test CA, run by uvicorn in a background thread, as ``gateway serve --tls-cert --tls-key`` does."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import uvicorn

from gateway.app import GatewayApp
from tests.browsers.tls import Leaf
from tests.support import wait_for_port


@contextlib.contextmanager
def serve_https(app: GatewayApp, port: int, leaf: Leaf) -> Iterator[str]:
    """Serve ``app`` on ``https://127.0.0.1:<port>``; yields that origin."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, proxy_headers=False,
                            log_config=None, lifespan="on", loop="asyncio",
                            ssl_certfile=str(leaf.cert), ssl_keyfile=str(leaf.key))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"gateway-{port}")
    thread.start()
    try:
        wait_for_port(port)
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
