"""The ``gateway`` command: serve, check-config, explain, sign-request, audit verify."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from gateway.errors import ConfigError
from gateway.settings import Settings

EPILOG = "Every option can also be set in the environment: GATEWAY_CONFIG, GATEWAY_HOST, GATEWAY_PORT, ..."


def _settings(overrides: dict[str, object]) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("settings (GATEWAY_* environment and options)", problems) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway import logs
    from gateway.app import create_app

    settings = _settings({
        "config": args.config, "local_dir": args.local_dir, "host": args.host, "port": args.port,
        "cors_origins": args.cors_origin or None, "workers": args.workers,
    })
    logs.configure(settings.log_level, settings.log_format)
    if settings.config is None and not settings.local_dir.is_dir():
        raise ConfigError(str(settings.local_dir), [
            "the folder to serve does not exist; create it, or pass --local-dir DIR (GATEWAY_LOCAL_DIR)"])
    common = {
        "host": settings.host, "port": settings.port, "access_log": False, "proxy_headers": False,
        "server_header": False, "log_config": None, "timeout_graceful_shutdown": 10,
    }
    if settings.workers > 1:
        # Workers are separate processes: they share settings through the environment, and must
        # share one signing key, or a URL signed by one worker would fail on another.
        for name, value in {"config": settings.config, "local_dir": settings.local_dir,
                            "host": settings.host, "port": settings.port}.items():
            if value is not None:
                os.environ[f"GATEWAY_{name.upper()}"] = str(value)
        if settings.cors_origins:
            os.environ["GATEWAY_CORS_ORIGINS"] = ",".join(settings.cors_origins)
        os.environ.setdefault("GATEWAY_SIGNING_KEY", secrets.token_urlsafe(32))
        create_app(_settings({}))  # validate once in the parent, so errors are printed once
        uvicorn.run("gateway.app:app_from_env", factory=True, workers=settings.workers, **common)  # type: ignore[arg-type]
        return 0
    app = create_app(settings)
    print(f"gateway: serving on {settings.base_url()} (policy {app.runtime.holder.current.version})",
          file=sys.stderr)
    if settings.config is None:
        print(f"gateway: try {settings.base_url()}/v1/datasets/local/objects/<a file in {settings.local_dir}>",
              file=sys.stderr)
    uvicorn.run(app, **common)  # type: ignore[arg-type]
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config import load_policy

    policy, _ = load_policy(Path(args.file))
    print(f"{args.file}: valid (version {policy.version}, {len(policy.datasets)} datasets: "
          f"{', '.join(sorted(policy.datasets))})")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from gateway.audit.chain import verify_lines

    try:
        with open(args.file, "rb") as fh:
            result = verify_lines(fh)
    except OSError as exc:
        raise ConfigError(args.file, [f"cannot read the file: {exc.strerror or exc}"]) from None
    if result.ok:
        print(f"{args.file}: OK, {result.records} records in {result.chains} chains")
        return 0
    print(f"{args.file}:{result.line}: {result.problem}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Self-hosted URL-signing gateway: hands out short-lived URLs to your S3, GCS or local "
        "objects after checking who asks and what the policy allows.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway", epilog=EPILOG, description=(
        "Run the gateway. Without --config it serves --local-dir as dataset 'local' to anonymous "
        "clients on loopback only, with the in-process cache and the audit log on stdout."))
    serve.add_argument("--config", type=Path, help="policy file (GATEWAY_CONFIG); reloaded when it changes")
    serve.add_argument("--local-dir", type=Path, help="folder for the embedded default (GATEWAY_LOCAL_DIR; ./data)")
    serve.add_argument("--host", help="address to listen on (GATEWAY_HOST; 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (GATEWAY_PORT; 8080)")
    serve.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                       help="allow this browser origin, e.g. http://localhost:3000 (repeatable; GATEWAY_CORS_ORIGINS)")
    serve.add_argument("--workers", type=int, help="worker processes (GATEWAY_WORKERS; 1)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a policy file offline", description=(
        "Validate a policy file. Exits 0 when it is valid; otherwise exits 1 and lists every problem "
        "with its location."))
    check.add_argument("file", help="the policy file")
    check.set_defaults(func=cmd_check_config)

    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_sub.add_parser("verify", help="check an audit file's hash chains", description=(
        "Check the hash chains of an audit file written by the file sink. Names the first line that "
        "was changed, removed or moved; exits 1 if there is one."))
    verify.add_argument("file")
    verify.set_defaults(func=cmd_audit_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"gateway: {exc.source} is not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
