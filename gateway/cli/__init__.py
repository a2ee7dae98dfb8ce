"""The ``gateway`` command. Each command (or family of commands) is a module of this package with a
``register(sub)`` that adds its parser; ``COMMANDS`` lists them in the order ``--help`` shows them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.cli import audit, check, doctor, explain, serve, sign, test_policy, urls
from gateway.cli.common import EPILOG
from gateway.errors import ConfigError
from gateway.version import version_line

COMMANDS = (serve, check, explain, test_policy, sign, urls, doctor, audit)


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
        description="Self-hosted URL-signing gateway: hands out short-lived URLs to your S3, GCS, Azure or local "
        "objects after checking who asks and what the policy allows.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action=_Version, help="print the package version and the git revision "
                        "it was built from")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
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
