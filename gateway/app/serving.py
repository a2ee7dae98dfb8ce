"""``gateway serve``: the HTTP server around the app (part of the composition root).

uvicorn runs the app, in one process or in several workers sharing the listening sockets, with
the hardened connection protocol of gateway/protocol.py; with ``GATEWAY_ADMIN_PORT`` a second
socket carries the operators' routes; with ``GATEWAY_TLS_CERT``/``GATEWAY_TLS_KEY`` it serves
HTTPS and follows the certificate files (gateway/tls.py). Everything is validated once, in the
parent, so that errors are printed once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from typing import Any

from gateway.app.protocol import Limits, configure
from gateway.errors import ConfigError
from gateway.settings import Settings


def serve(settings: Settings) -> None:
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from gateway.app import create_app, freeze_startup_heap

    if settings.config is None and not settings.local_dir.is_dir():
        raise ConfigError(str(settings.local_dir), [
            "the folder to serve does not exist; create it, or pass --local-dir DIR (GATEWAY_LOCAL_DIR)"])
    if settings.admin_port is not None and settings.admin_port == settings.port:
        raise ConfigError("settings", ["GATEWAY_ADMIN_PORT must differ from GATEWAY_PORT"])
    configure(Limits.of(settings))
    common: dict[str, Any] = {
        "host": settings.host, "port": settings.port, "access_log": False, "proxy_headers": False,
        "server_header": False, "log_config": None, "timeout_graceful_shutdown": 10,
        "http": "gateway.app.protocol:GatewayHttpProtocol", "timeout_keep_alive": settings.keepalive_timeout,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
    if settings.tls_cert is not None and settings.tls_key is not None:
        from gateway.app.tls import FollowedCertificate, load_pair

        load_pair(settings.tls_cert, settings.tls_key)  # a bad pair is a clear error now, not per worker
        common["ssl_context_factory"] = FollowedCertificate(settings.tls_cert, settings.tls_key)
    log = logging.getLogger("gateway")
    passed: dict[str, object] = {"admin_port": settings.admin_port, "header_timeout": settings.header_timeout,
                                 "max_header_bytes": settings.max_header_bytes, "max_headers": settings.max_headers}
    for name, setting in passed.items():
        if setting is not None:  # workers read their settings from the environment
            os.environ[f"GATEWAY_{name.upper()}"] = str(setting)
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
        config = uvicorn.Config("gateway.app:app_from_env", factory=True, workers=settings.workers, **common)
        sockets = _sockets(config, settings)
        log.info("serving on %s with %d workers%s", settings.base_url(), settings.workers, _admin(settings))
        Multiprocess(config, sockets=sockets).run()
        return
    app = create_app(settings)
    freeze_startup_heap()
    log.info("serving on %s (policy %s)%s", settings.base_url(), app.runtime.holder.current.version, _admin(settings))
    if settings.config is None:
        log.info("try %s/v1/datasets/local/objects/<a file in %s>", settings.base_url(), settings.local_dir)
    config = uvicorn.Config(app.asgi, **common)
    uvicorn.Server(config).run(sockets=_sockets(config, settings))


def _sockets(config: Any, settings: Settings) -> list[socket.socket]:
    """The public socket (bound by uvicorn's own rules), and the admin socket when there is one."""
    public: socket.socket = config.bind_socket()
    if settings.admin_port is None:
        return [public]
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    admin = socket.socket(family, socket.SOCK_STREAM)
    admin.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        admin.bind((settings.host, settings.admin_port))
    except OSError as exc:
        raise ConfigError("GATEWAY_ADMIN_PORT", [f"cannot listen on {settings.host}:{settings.admin_port} "
                                                 f"({exc.strerror or exc})"]) from None
    admin.set_inheritable(True)
    return [public, admin]


def _admin(settings: Settings) -> str:
    return "" if settings.admin_port is None else f"; metrics and readiness on port {settings.admin_port}"
