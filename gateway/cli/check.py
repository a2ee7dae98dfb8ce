"""``gateway check-config``: validate a policy file offline, with the checks ``gateway serve`` makes."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import EPILOG, Subparsers, config_path, settings_from
from gateway.errors import ConfigError


def cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.app.preflight import preflight
    from gateway.config import load_policy

    path = config_path(args)
    problems: list[str] = []
    settings = None
    try:  # the settings too: serve refuses bad ones, and one run lists every problem
        settings = settings_from({})
    except ConfigError as exc:
        problems += exc.problems
    try:
        policy, _ = load_policy(path)
    except ConfigError as exc:
        raise ConfigError(str(path), problems + exc.problems) from None
    if settings is None:
        raise ConfigError(str(path), problems)
    report = preflight(policy, settings)
    for warning in report.warnings:  # what a delivery does not guarantee, closed datasets: not errors
        print(f"warning: {warning}")
    if args.cases is not None:  # a dataset that no policy test names is a dataset nobody checks
        from gateway.cli.policy_cases import datasets_without_cases, load_cases

        for name in datasets_without_cases(policy, load_cases(args.cases)):
            print(f"warning: datasets.{name}: no case of {args.cases} names this dataset (gateway test-policy)")
    for note in report.notes:
        print(f"note: {note}")
    if report.problems:
        raise ConfigError(str(path), report.problems)
    print(f"{path}: valid (version {policy.version}, {len(policy.datasets)} datasets: "
          f"{', '.join(sorted(policy.datasets))})")
    return 0


def register(sub: Subparsers) -> None:
    check = sub.add_parser("check-config", help="validate a policy file offline", description=(
        "Validate a policy file with every check gateway serve makes at startup that needs no network: the "
        "schema, references between sections, URL lifetimes, what a dataset's delivery needs of its backend, and "
        "the GATEWAY_* settings and secrets of this environment. Exits 0 when valid; otherwise exits 1 and lists "
        "every problem with its location. A secret that serve reads from the environment and that is not set "
        "here is a note, not a problem (CI does not hold production secrets)."), epilog=EPILOG)
    check.add_argument("file", nargs="?", help="the policy file (or --config FILE, or GATEWAY_CONFIG)")
    check.add_argument("--config", type=Path, help="the policy file (GATEWAY_CONFIG)")
    check.add_argument("--cases", type=Path, metavar="CASES.yaml",
                       help="warn about datasets that no case of this gateway test-policy file names")
    check.set_defaults(func=cmd_check_config)
