"""``gateway sign-request``: a vendor's signed request headers (docs/vendor-auth.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.cli.common import Subparsers
from gateway.errors import ConfigError


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


def register(sub: Subparsers) -> None:
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
