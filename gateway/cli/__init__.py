"""The ``gateway`` command: serve, check-config, explain, sign-request, audit verify."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from gateway.config import Dataset, PolicyFile
from gateway.errors import ConfigError
from gateway.models import Principal
from gateway.settings import Settings
from gateway.version import version_line

EPILOG = "Every option can also be set in the environment: GATEWAY_CONFIG, GATEWAY_HOST, GATEWAY_PORT, ..."


def _settings(overrides: dict[str, object]) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("settings (GATEWAY_* environment and options)", problems) from None


def cmd_serve(args: argparse.Namespace) -> int:
    workers = args.workers or int(os.environ.get("GATEWAY_WORKERS", "1") or 1)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Set before prometheus_client is imported: every worker then writes its metrics to files
        # that /metrics merges, whichever worker answers the scrape.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    from gateway import logs
    from gateway.app.serving import serve

    settings = _settings({
        "config": args.config, "local_dir": args.local_dir, "host": args.host, "port": args.port,
        "cors_origins": args.cors_origin or None, "workers": args.workers, "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
    })
    logs.configure(settings.log_level, settings.log_format)
    serve(settings)
    return 0


def _config_path(args: argparse.Namespace) -> Path:
    """``--config``, then a positional FILE where the command has one, then GATEWAY_CONFIG."""
    given = getattr(args, "config", None) or getattr(args, "file", None) or os.environ.get("GATEWAY_CONFIG")
    if not given:
        raise ConfigError(args.command, ["give --config FILE or set GATEWAY_CONFIG"])
    return Path(given)


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config import load_policy

    path = _config_path(args)
    policy, _ = load_policy(path)
    print(f"{path}: valid (version {policy.version}, {len(policy.datasets)} datasets: "
          f"{', '.join(sorted(policy.datasets))})")
    for warning in policy.warnings():  # what a delivery does not guarantee: worth knowing, not an error
        print(f"warning: {warning}")
    return 0


def cmd_sign_request(args: argparse.Namespace) -> int:
    from gateway.vendor_signing import format_headers, sign_request

    secret = os.environ.get(args.secret_env, "")
    if not secret:
        raise ConfigError("sign-request", [f"the environment variable {args.secret_env} is not set or empty"])
    body: bytes | None = None
    if args.data is not None:
        body = args.data.encode("utf-8")
    elif args.data_file is not None:
        try:  # the bytes as they are (a final newline included): the body is signed byte for byte
            body = sys.stdin.buffer.read() if args.data_file == "-" else Path(args.data_file).read_bytes()
        except OSError as exc:
            raise ConfigError("sign-request", [f"--data-file: cannot read {args.data_file} "
                                               f"({exc.strerror or type(exc).__name__})"]) from None
    print(format_headers(sign_request(args.method, args.url, key_id=args.key_id, secret=secret, body=body)))
    return 0


def _explain_principal(args: argparse.Namespace, policy: PolicyFile) -> Principal:
    from gateway.auth.claims import principal_from_claims, select_issuer, unverified_parts
    from gateway.errors import Unauthenticated
    from gateway.models import ANONYMOUS, AuthMethod

    if args.token:
        try:
            claims = unverified_parts(args.token)[1]
            return principal_from_claims(select_issuer(policy.auth.oidc, claims), claims)
        except Unauthenticated as exc:
            raise ConfigError("--token", [exc.detail]) from None
    if args.vendor:
        for vendor in policy.auth.vendors:
            ids = [key.id for key in vendor.keys]
            if args.vendor == vendor.name or args.vendor in ids:
                key_id = args.vendor if args.vendor in ids else ids[0]
                return Principal(AuthMethod.VENDOR_HMAC, subject=vendor.name, issuer=vendor.name, key_id=key_id)
        raise ConfigError("--vendor", [f"{args.vendor!r} is neither a vendor name nor a key id in auth.vendors"])
    return ANONYMOUS


def cmd_explain(args: argparse.Namespace) -> int:
    import ipaddress

    from gateway.config import load_policy
    from gateway.errors import InvalidKey
    from gateway.keys import validate_key
    from gateway.policy import compile_policy

    policy, raw = load_policy(_config_path(args))
    compiled = compile_policy(policy, raw)
    dataset = compiled.dataset(args.dataset)
    if dataset is None:
        raise ConfigError("--dataset", [f"no dataset {args.dataset!r}; the file has {', '.join(policy.datasets)}"])
    try:
        key = validate_key(args.key, dataset.max_key_bytes)
        ip = ipaddress.ip_address(args.ip)
    except (InvalidKey, ValueError) as exc:
        raise ConfigError("explain", [str(exc)]) from None
    principal = _explain_principal(args, policy)
    decision = dataset.decide(principal, ip, key)
    who = f"{principal.method}" + (f" {principal.subject}" if principal.subject else "")
    if principal.groups:
        who += f" (groups: {', '.join(sorted(principal.groups))})"
    print(f"request:  {who} from {ip} reads {args.dataset}/{key}")
    if args.token:
        print("note:     the token's claims were read WITHOUT checking its signature or expiry")
    verdict = f"ALLOW by rule {decision.rule}" if decision.allowed else f"DENY ({decision.reason})"
    print(f"decision: {verdict}")
    print(f"delivery: {_delivery_line(dataset.config)}")
    for check in dataset.explain(principal, ip):
        if check.matched:
            print(f"  rule {check.rule}: matches")
        else:
            print(f"  rule {check.rule}: lacks " + "; ".join(check.missing))
    if not dataset.key_pattern.match(key):
        print(f"  key {key!r} is not in allow_keys: {', '.join(dataset.config.allow_keys)}")
    return 0 if decision.allowed else 3


def _delivery_line(dataset: Dataset) -> str:
    backend = dataset.backend
    if backend.kind == "local":
        return "local (the gateway serves the file itself, behind its own URL signature)"
    if dataset.delivery == "proxy":
        return "proxy (the gateway streams the object; no storage URL reaches the client)"
    binding = getattr(backend, "network_binding", None)
    if binding is not None:
        return "redirect, bound to the network by an STS session policy (checked by S3 when the URL is used)"
    return "redirect (a presigned URL; any network rule is checked at the gateway only)"


def cmd_urls(args: argparse.Namespace) -> int:
    from gateway.cli import urls

    return urls.run(config=_config_path(args), dataset=args.dataset, base_url=args.base_url,
                        listing=args.list, fmt=args.format)


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


class _Version(argparse.Action):
    """``--version``, worked out only when asked (a checkout asks git)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings, dest, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Self-hosted URL-signing gateway: hands out short-lived URLs to your S3, GCS or local "
        "objects after checking who asks and what the policy allows.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action=_Version, help="print the package version and the git revision "
                        "it was built from")
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
    serve.add_argument("--tls-cert", type=Path, metavar="FILE",
                       help="serve HTTPS with this PEM certificate chain (GATEWAY_TLS_CERT); followed when it changes")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="its PEM private key (GATEWAY_TLS_KEY)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a policy file offline", description=(
        "Validate a policy file. Exits 0 when it is valid; otherwise exits 1 and lists every problem "
        "with its location."), epilog=EPILOG)
    check.add_argument("file", nargs="?", help="the policy file (or --config FILE, or GATEWAY_CONFIG)")
    check.add_argument("--config", type=Path, help="the policy file (GATEWAY_CONFIG)")
    check.set_defaults(func=cmd_check_config)

    explain = sub.add_parser("explain", help="show the policy's decision for a hypothetical request",
                             description=(
        "Evaluate the policy offline, with the same engine as the server, and print the decision, the rule "
        "that matched or the reason for a denial, and what each rule lacked. No network: a --token's claims "
        "are read without checking its signature. Exits 0 when allowed, 3 when denied, 1 on bad input."),
        epilog=EPILOG)
    explain.add_argument("--config", type=Path, help="policy file (GATEWAY_CONFIG)")
    explain.add_argument("--dataset", required=True)
    explain.add_argument("--key", required=True, help="object key, as stored (not percent-encoded)")
    who = explain.add_mutually_exclusive_group()
    who.add_argument("--token", help="a JWT whose claims to use (not verified)")
    who.add_argument("--vendor", help="a vendor name or HMAC key id from auth.vendors")
    who.add_argument("--anonymous", action="store_true", help="no credential (the default)")
    explain.add_argument("--ip", default="127.0.0.1", help="client IP (default 127.0.0.1)")
    explain.set_defaults(func=cmd_explain)

    signer = sub.add_parser("sign-request", help="print vendor HMAC headers for a request", description=(
        "Sign METHOD URL and its body (signature version 2, see docs/vendor-auth.md) with a vendor key and "
        "print the headers as 'Name: value' lines, e.g. for curl -H. The secret is read from the environment "
        "variable named by --secret-env. Without --data or --data-file the body is empty, as for a GET. "
        "Send exactly the signed bytes (curl --data-binary, not --data, which drops newlines)."))
    signer.add_argument("--key-id", required=True)
    signer.add_argument("--secret-env", required=True, metavar="VAR")
    body = signer.add_mutually_exclusive_group()
    body.add_argument("--data", metavar="TEXT", help="the request body to sign (sent as UTF-8)")
    body.add_argument("--data-file", metavar="FILE", help="sign the bytes of FILE as the body ('-': stdin)")
    signer.add_argument("method")
    signer.add_argument("url")
    signer.set_defaults(func=cmd_sign_request)

    urls = sub.add_parser("urls", help="turn object keys into gateway URLs for the vendor", description=(
        "Print the gateway URL of each object key: keys come from stdin (one per line) or, with --list, "
        "from listing the dataset's bucket prefix or folder (with the pod's or your credentials). Hand "
        "these URLs to the vendor instead of bucket URLs. Keys the gateway would refuse are skipped and "
        "reported on stderr (exit 1)."), epilog=EPILOG)
    urls.add_argument("dataset")
    urls.add_argument("--base-url", required=True, help="the gateway's public URL, e.g. https://gw.acme.example")
    urls.add_argument("--config", type=Path, help="policy file (GATEWAY_CONFIG)")
    urls.add_argument("--list", action="store_true", help="list the dataset's objects instead of reading stdin")
    urls.add_argument("--format", choices=["lines", "csv", "json"], default="lines")
    urls.set_defaults(func=cmd_urls)

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
