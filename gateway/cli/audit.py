"""``gateway audit``: tools for the audit log."""

from __future__ import annotations

import argparse
import sys

from gateway.cli.common import Subparsers
from gateway.errors import ConfigError


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


def register(sub: Subparsers) -> None:
    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_sub.add_parser("verify", help="check an audit file's hash chains", description=(
        "Check the hash chains of an audit file written by the file sink. Names the first line that "
        "was changed, removed or moved; exits 1 if there is one."))
    verify.add_argument("file")
    verify.set_defaults(func=cmd_audit_verify)
