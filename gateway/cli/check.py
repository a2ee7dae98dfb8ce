"""``gateway check-config``: validate a policy file offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import EPILOG, Subparsers, config_path


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config import load_policy

    path = config_path(args)
    policy, _ = load_policy(path)
    print(f"{path}: valid (version {policy.version}, {len(policy.datasets)} datasets: "
          f"{', '.join(sorted(policy.datasets))})")
    for warning in policy.warnings():  # what a delivery does not guarantee: worth knowing, not an error
        print(f"warning: {warning}")
    return 0


def register(sub: Subparsers) -> None:
    check = sub.add_parser("check-config", help="validate a policy file offline", description=(
        "Validate a policy file. Exits 0 when it is valid; otherwise exits 1 and lists every problem "
        "with its location."), epilog=EPILOG)
    check.add_argument("file", nargs="?", help="the policy file (or --config FILE, or GATEWAY_CONFIG)")
    check.add_argument("--config", type=Path, help="the policy file (GATEWAY_CONFIG)")
    check.set_defaults(func=cmd_check_config)
