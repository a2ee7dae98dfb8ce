"""``gateway serve``: the HTTP server around the app (part of the composition root).

uvicorn runs the app, one process or several workers sharing one listening socket; with
``GATEWAY_TLS_CERT``/``GATEWAY_TLS_KEY`` it serves HTTPS and follows the certificate files
(gateway/tls.py). Everything is validated once, in the parent, so that errors are printed once.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from gateway.errors import ConfigError
from gateway.settings import Settings


def serve(settings: Settings) -> None:
    import uvicorn

    from gateway.app import create_app, freeze_startup_heap

    if settings.config is None and not settings.local_dir.is_dir():
        raise ConfigError(str(settings.local_dir), [
            "the folder to serve does not exist; create it, or pass --local-dir DIR (GATEWAY_LOCAL_DIR)"])
    common: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "access_log": False, "proxy_headers": False,
        "server_header": False, "log_config": None, "timeout_graceful_shutdown": 10,
    }
    if settings.tls_cert is not None and settings.tls_key is not None:
        from gateway.tls import FollowedCertificate, load_pair

        load_pair(settings.tls_cert, settings.tls_key)  # a bad pair is a clear error now, not per worker
        common["ssl_context_factory"] = FollowedCertificate(settings.tls_cert, settings.tls_key)
    log = logging.getLogger("gateway")
    if settings.workers > 1:
        # Workers are separate processes: they share settings through the environment, and must
        # share one signing key, or a URL signed by one worker would fail on another.
        for name, value in {"config": settings.config, "local_dir": settings.local_dir, "host": settings.host,
                            "port": settings.port, "tls_cert": settings.tls_cert,
                            "tls_key": settings.tls_key}.items():
            if value is not None:
                os.environ[f"GATEWAY_{name.upper()}"] = str(value)
        if settings.cors_origins:
            os.environ["GATEWAY_CORS_ORIGINS"] = ",".join(settings.cors_origins)
        os.environ.setdefault("GATEWAY_SIGNING_KEY", secrets.token_urlsafe(32))
        create_app(Settings())  # validate once in the parent, so errors are printed once
        log.info("serving on %s with %d workers", settings.base_url(), settings.workers)
        uvicorn.run("gateway.app:app_from_env", factory=True, workers=settings.workers, **common)
        return
    app = create_app(settings)
    freeze_startup_heap()
    log.info("serving on %s (policy %s)", settings.base_url(), app.runtime.holder.current.version)
    if settings.config is None:
        log.info("try %s/v1/datasets/local/objects/<a file in %s>", settings.base_url(), settings.local_dir)
    uvicorn.run(app.asgi, **common)
