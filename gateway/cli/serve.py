"""``gateway serve``: run the gateway."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gateway.cli.common import SERVE_EPILOG, Subparsers, settings_from

# The settings field each option sets, and the flag a bad value is reported under.
_OPTIONS = {"config": "--config", "local_dir": "--local-dir", "host": "--host", "port": "--port",
            "cors_origins": "--cors-origin", "workers": "--workers", "tls_cert": "--tls-cert",
            "tls_key": "--tls-key"}


def cmd_serve(args: argparse.Namespace) -> int:
    # The settings are validated before anything else (a bad value is one line, never a traceback);
    # settings.py imports nothing of prometheus_client, so the variable below is still in time.
    settings = settings_from({
        "config": args.config, "local_dir": args.local_dir, "host": args.host, "port": args.port,
        "cors_origins": args.cors_origin or None, "workers": args.workers, "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
    }, options=_OPTIONS)
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Set before prometheus_client is imported: every worker then writes its metrics to files
        # that /metrics merges, whichever worker answers the scrape.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    from gateway import logs
    from gateway.app.serving import serve

    logs.configure(settings.log_level, settings.log_format)
    serve(settings)
    return 0


def register(sub: Subparsers) -> None:
    serve = sub.add_parser("serve", help="run the gateway", epilog=SERVE_EPILOG, description=(
        "Run the gateway. Without --config it serves --local-dir as dataset 'local' to anonymous "
        "clients on loopback only, with the in-process cache and the audit log on stdout."))
    serve.add_argument("--config", type=Path, help="policy file (GATEWAY_CONFIG); reloaded when it changes")
    serve.add_argument("--local-dir", type=Path, help="folder for the embedded default (GATEWAY_LOCAL_DIR; ./data)")
    serve.add_argument("--host", help="address to listen on (GATEWAY_HOST; 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (GATEWAY_PORT; 8080)")
    serve.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                       help="allow this browser origin, e.g. http://localhost:3000 (repeatable; GATEWAY_CORS_ORIGINS)")
    serve.add_argument("--workers", type=int, help="worker processes (GATEWAY_WORKERS; 1)")
    serve.add_argument("--tls-cert", type=Path, metavar="FILE",
                       help="serve HTTPS with this PEM certificate chain (GATEWAY_TLS_CERT); followed when it changes")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="its PEM private key (GATEWAY_TLS_KEY)")
    serve.set_defaults(func=cmd_serve)
