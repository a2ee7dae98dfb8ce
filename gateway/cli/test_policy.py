"""``gateway test-policy CASES.yaml``: table-driven policy tests, decided offline by the server's own
admit step (gateway/cli/policy_cases.py), for CI: exit 0 when every case passes, 1 when one fails,
2 on bad input (a cases file or policy that does not validate, a case naming a vendor, issuer or rule
the policy does not have); ``--junit FILE`` writes the results as JUnit XML."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import xml.etree.ElementTree as ET  # noqa: S405 - writes XML, parses none
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.common import EPILOG, Subparsers, settings_from
from gateway.errors import ConfigError

if TYPE_CHECKING:  # imported when the command runs: every other command (and --help) starts without the app
    from gateway.app.offline import OfflinePolicy
    from gateway.cli.policy_cases import CasesFile, Outcome

PASSED, FAILED, BAD_INPUT = 0, 1, 2


async def run_cases(cases: CasesFile, loaded: OfflinePolicy) -> list[tuple[Outcome, float]]:
    from gateway.app.offline import offline_gate, offline_state
    from gateway.cli.policy_cases import evaluate

    state = offline_state(loaded)
    gate = offline_gate()
    outcomes = []
    for case in cases.cases:
        started = time.perf_counter()
        outcome = await evaluate(case, loaded.policy, state, gate)
        outcomes.append((outcome, time.perf_counter() - started))
    return outcomes


def junit(outcomes: Sequence[tuple[Outcome, float]], *, policy: str, version: str) -> ET.ElementTree[ET.Element]:
    """One ``testsuite``, one ``testcase`` per case (its dataset as the class name), a ``failure`` with
    what was expected and what was decided, and the policy's version as a property."""
    failures = sum(not outcome.passed for outcome, _ in outcomes)
    suites = ET.Element("testsuites", name="gateway test-policy", tests=str(len(outcomes)), failures=str(failures),
                        errors="0")
    suite = ET.SubElement(suites, "testsuite", name="gateway test-policy", tests=str(len(outcomes)),
                          failures=str(failures), errors="0", skipped="0",
                          time=f"{sum(seconds for _, seconds in outcomes):.6f}")
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="policy", value=policy)
    ET.SubElement(properties, "property", name="policy_version", value=version)
    for outcome, seconds in outcomes:
        case = ET.SubElement(suite, "testcase", classname=f"policy.{outcome.case.dataset}", name=outcome.case.name,
                             time=f"{seconds:.6f}")
        if outcome.problem is not None:
            failure = ET.SubElement(case, "failure", message=outcome.problem, type="PolicyMismatch")
            failure.text = _details(outcome)
    return ET.ElementTree(suites)


def _details(outcome: Outcome) -> str:
    from gateway.cli.policy_cases import decided, expected

    case = outcome.case
    who = ("vendor " + case.vendor if case.vendor else f"oidc {case.oidc.issuer}/{case.oidc.subject}" if case.oidc
           else f"session {case.session.issuer}/{case.session.subject}" if case.session else "anonymous")
    return (f"{who} from {case.client_ip} {case.action}s {case.dataset}/{case.key or ''}\n"
            f"expected: {expected(case)}\ndecided:  {decided(outcome.decision)}\n"
            f"rule:     {outcome.decision.rule or '(none: no rule admits this caller)'}")


def cmd_test_policy(args: argparse.Namespace) -> int:
    from gateway.app.offline import load_offline_policy, offline_state
    from gateway.cli.policy_cases import check_references, load_cases

    try:
        settings = settings_from({"config": args.config, "local_dir": args.local_dir})
        loaded = load_offline_policy(settings)
        cases = load_cases(args.cases)
        problems = check_references(cases, loaded.policy)
        if problems:
            raise ConfigError(str(args.cases), problems)
    except ConfigError as exc:
        print(f"gateway test-policy: {exc.source} is not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return BAD_INPUT
    outcomes = asyncio.run(run_cases(cases, loaded))
    version = offline_state(loaded).version
    for outcome, _ in outcomes:
        if outcome.passed:
            if args.verbose:
                print(f"PASS  {outcome.case.name}")
            continue
        print(f"FAIL  {outcome.case.name}")
        for line in _details(outcome).splitlines():
            print(f"      {line}")
    failed = sum(not outcome.passed for outcome, _ in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed (policy {loaded.source}, version {version})")
    if args.junit is not None:
        junit(outcomes, policy=loaded.source, version=version).write(args.junit, encoding="utf-8",
                                                                      xml_declaration=True)
    return FAILED if failed else PASSED


def register(sub: Subparsers) -> None:
    command = sub.add_parser("test-policy", help="check the policy against table-driven cases, offline (CI)",
                             description=(
        "Decide each case of CASES.yaml (who asks, from where, for which dataset, key and action; what the "
        "policy must answer) with the server's own decision code, offline, and report every case that is not "
        "answered as expected: what was expected, what was decided, and the rule that decided it. Exits 0 when "
        "every case passes, 1 when one fails, 2 on bad input. The format: docs/policy-tests.md."), epilog=EPILOG)
    command.add_argument("cases", type=Path, help="the cases file (YAML)")
    command.add_argument("--config", type=Path, help="policy file (GATEWAY_CONFIG); without it, the embedded default")
    command.add_argument("--local-dir", type=Path, help="the embedded default's folder (GATEWAY_LOCAL_DIR)")
    command.add_argument("--junit", type=Path, metavar="FILE", help="also write the results as JUnit XML")
    command.add_argument("-v", "--verbose", action="store_true", help="list the cases that pass too")
    command.set_defaults(func=cmd_test_policy)
