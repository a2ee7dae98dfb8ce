"""``gateway doctor --vendor-origin ORIGIN URL``: run against a live gateway what a vendor's browser
client does for one object (gateway/cli/doctor_checks.py), and print each check with the fix for
each failure. Exits 0 when every check passes (or does not apply), 1 when one fails, 2 on bad input.

The credential the client adds is taken from the environment, never from the command line (shell
history, process lists): a bearer token (``--bearer-env``) or a vendor key (``--key-id`` and
``--secret-env``), signed per request with the shipped signing helper."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import httpx
import orjson

from gateway.cli.common import EPILOG, Subparsers
from gateway.cli.doctor_checks import Browser, Check, Credential, Doctor
from gateway.config import origin_of
from gateway.vendor_signing import sign_request

BAD_INPUT = 2
_MARK = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}


def _problem(text: str) -> int:
    print(f"gateway doctor: {text}", file=sys.stderr)
    return BAD_INPUT


def _credential(args: argparse.Namespace) -> tuple[Credential | None, tuple[str, ...]] | str:
    """The client's credential, or what is wrong with the options."""
    if args.bearer_env and (args.key_id or args.secret_env):
        return "give one credential: --bearer-env, or --key-id with --secret-env"
    if args.bearer_env:
        token = os.environ.get(args.bearer_env, "").strip()
        if not token:
            return f"the environment variable {args.bearer_env} (--bearer-env) is empty"
        return (lambda method, url: {"authorization": f"Bearer {token}"}), ("authorization",)
    if bool(args.key_id) != bool(args.secret_env):
        return "--key-id and --secret-env go together"
    if args.key_id:
        secret = os.environ.get(args.secret_env, "")
        if not secret.strip():
            return f"the environment variable {args.secret_env} (--secret-env) is empty"
        # One signature per request, each with its own second: the gateway accepts a signature once.
        back = itertools.count()
        key_id = args.key_id

        def signed(method: str, url: str) -> dict[str, str]:
            headers = sign_request(method, url, key_id=key_id, secret=secret, timestamp=int(time.time()) - next(back))
            return {name.lower(): value for name, value in headers.items()}

        names = ("x-gateway-key-id", "x-gateway-timestamp", "x-gateway-signature-version",
                 "x-gateway-content-sha256", "x-gateway-signature")
        return signed, names
    return None, ()


def cmd_doctor(args: argparse.Namespace) -> int:
    origin = origin_of(args.vendor_origin)
    if origin is None or origin != args.vendor_origin.rstrip("/").lower():
        return _problem(f"--vendor-origin {args.vendor_origin!r} is not an origin like https://app.vendor.example")
    if origin_of(args.url) is None:
        return _problem("URL must be an object's gateway URL, e.g. https://gw.acme.example/v1/datasets/ds/objects/k")
    credential = _credential(args)
    if isinstance(credential, str):
        return _problem(credential)
    browser = Browser(origin, args.credentials, credential[0], credential[1])
    with httpx.Client(timeout=args.timeout, follow_redirects=False, verify=not args.insecure) as http:
        checks = Doctor(args.url, browser, http, min_life=args.min_life).run()
    failed = [check for check in checks if check.status == "fail"]
    if args.json:
        print(orjson.dumps({"url": args.url, "origin": origin, "credentials": args.credentials,
                            "passed": not failed, "checks": [c.as_json() for c in checks]}).decode())
    else:
        _print(args.url, origin, checks)
    return 1 if failed else 0


def _print(url: str, origin: str, checks: list[Check]) -> None:
    print(f"gateway doctor: {url} as a page of {origin} loads it")
    for check in checks:
        print(f"  {_MARK[check.status]}  {check.name:<14}{check.detail}")
        if check.fix:
            print(f"        {'':<14}fix: {check.fix}")
    failed = sum(check.status == "fail" for check in checks)
    print(f"{len(checks) - failed} of {len(checks)} checks passed or did not apply" if failed
          else "every check passed or did not apply")


def register(sub: Subparsers) -> None:
    doctor = sub.add_parser("doctor", help="check a live gateway the way a vendor's browser client loads an object",
                            description=(
        "Run, against a live gateway, what a vendor's browser client does for one object: the CORS preflight (when "
        "it sends a credential header), GET from the vendor's origin, the redirect target's CORS for the Origin a "
        "browser sends after the redirect (null, when cross-origin), Range, HEAD, and the life left on the URL. "
        "Prints pass or fail per check, with the fix for each failure. Exits 0 when all pass, 1 when one fails, "
        "2 on bad input. Run it from the vendor's users' network: the policy's network rules apply to it."),
        epilog=EPILOG)
    doctor.add_argument("url", help="the object's gateway URL, as a manifest (gateway urls) holds it")
    doctor.add_argument("--vendor-origin", required=True, metavar="ORIGIN",
                        help="the vendor app's origin, e.g. https://app.labelbox.com")
    doctor.add_argument("--bearer-env", metavar="VAR", help="send Authorization: Bearer with the token in $VAR")
    doctor.add_argument("--key-id", help="sign requests with this vendor key id (with --secret-env)")
    doctor.add_argument("--secret-env", metavar="VAR", help="the vendor key's secret, in $VAR")
    doctor.add_argument("--credentials", choices=["omit", "include"], default="omit",
                        help="the client's fetch credentials mode (include: FiftyOne, three.js withCredentials)")
    doctor.add_argument("--min-life", type=float, default=60.0, metavar="SECONDS",
                        help="the least life the handed-out URL must have left (default 60)")
    doctor.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="per request (default 10)")
    doctor.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (a test gateway)")
    doctor.add_argument("--json", action="store_true", help="print the checks as one JSON object")
    doctor.set_defaults(func=cmd_doctor)
