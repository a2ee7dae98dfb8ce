"""``gateway explain``: the policy's decision for a hypothetical request, offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import EPILOG, Subparsers, config_path
from gateway.config import Dataset, PolicyFile
from gateway.errors import ConfigError
from gateway.models import Principal


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

    policy, raw = load_policy(config_path(args))
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
        served = "the gateway serves the file itself, behind its own URL signature"
        if dataset.delivery == "auto":
            return f"auto, local ({served}; a page that reads it gets it directly)"
        return f"local ({served})"
    if dataset.delivery == "proxy":
        return "proxy (the gateway streams the object; no storage URL reaches the client)"
    binding = getattr(backend, "network_binding", None)
    if binding is None:
        redirect = "redirect (a presigned URL; any network rule is checked at the gateway only)"
    elif backend.kind == "azure":
        redirect = "redirect, bound to the network by the sip of each SAS (checked by Azure Storage when used)"
    else:
        redirect = "redirect, bound to the network by an STS session policy (checked by S3 when the URL is used)"
    if dataset.delivery == "auto":
        return f"auto (streamed to a page that reads the answer, Sec-Fetch-Mode cors; otherwise {redirect})"
    return redirect


def register(sub: Subparsers) -> None:
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
