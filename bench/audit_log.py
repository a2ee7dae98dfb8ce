"""A large audit log, fast, and what ``gateway audit report`` costs on it.

Writes sealed records the way the gateway's writer does (``encode_fields`` and the chain's seal, two
workers' chains interleaved in one file), with the traffic of a busy deployment: six datasets, 500
principals (OIDC users, vendor keys, anonymous), two million possible keys, batches, proxied bytes,
refusals for every reason, 90 days. Some keys and user agents are hostile HTML, as callers may send.
Then, with ``--measure``, runs ``gateway audit verify`` and ``gateway audit report`` on it, each in a
child process, and prints the wall time and that child's peak RSS (``ru_maxrss``); ``--json FILE``
writes the figures for the docs.

Run from the repository root::

    .venv/bin/python -m bench.audit_log --records 5000000 --out /tmp/audit-5m.jsonl --measure
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from gateway.audit.chain import Chain, encode_fields
from gateway.models import ANONYMOUS, AuthMethod, Principal

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ["driving", "medical-ct", "retail-shelves", "satellite", "speech", "docs-ocr"]
REASONS = ["no_rule_matched", "key_not_allowed", "unauthenticated", "bad_signature", "expired", "rate_limited",
           "invalid_key", "unknown_dataset"]
AGENTS = [f"Mozilla/5.0 (X11; Linux x86_64) Chrome/{v}.0" for v in range(110, 140)] + [
    "python-httpx/0.28", "labelbox-importer/3.2", "curl/8.5.0", '<script>alert("ua")</script>',
    "=HYPERLINK(\"http://evil.example\")"]
START = 1_735_689_600.0  # 2025-01-01T00:00:00Z


def principals(rng: random.Random) -> list[Principal]:
    people = [Principal(AuthMethod.OIDC, subject=f"00u{rng.getrandbits(40):x}", email=f"user{i}@corp.example",
                        issuer="okta", groups=frozenset({"ml-team"})) for i in range(470)]
    vendors = [Principal(AuthMethod.VENDOR_HMAC, subject=f"vendor-{i}", issuer=f"vendor-{i}", key_id=f"k{i}")
               for i in range(29)]
    return [*people, *vendors, ANONYMOUS]


def key(rng: random.Random) -> str:
    if rng.random() < 0.0005:
        return '<img src=x onerror="alert(1)">/../' + str(rng.randrange(100))
    return f"images/{rng.randrange(2000):04d}/frame-{rng.randrange(1000):04d}.jpg"


def generate(out: Path, records: int, seed: int = 7) -> float:
    """Write ``records`` sealed records; returns the seconds it took."""
    rng = random.Random(seed)
    people = principals(rng)
    chains = [Chain(f"bench:{pid}:{rng.getrandbits(32):08x}:file") for pid in (101, 102)]
    span = 90 * 86_400
    started = time.perf_counter()
    with open(out, "wb") as fh:
        batch: list[bytes] = []
        for i in range(records):
            at = START + span * i / records
            who = people[int(rng.random() ** 2 * len(people))]  # a few principals do most of the work
            dataset = DATASETS[int(rng.random() ** 1.5 * len(DATASETS))]
            roll = rng.random()
            action = ("redirect" if roll < 0.6 else "proxy" if roll < 0.75 else "fetch" if roll < 0.85
                      else "sign_batch" if roll < 0.9 else "list" if roll < 0.95 else "sign")
            allowed = rng.random() < 0.93
            reason = None if allowed else REASONS[rng.randrange(len(REASONS))]
            status = (200 if action in ("proxy", "fetch", "list", "sign_batch", "sign") else 302) if allowed \
                else (401 if reason in ("unauthenticated", "bad_signature", "expired") else 429
                      if reason == "rate_limited" else 400 if reason == "invalid_key" else 403)
            keys = [key(rng) for _ in range(rng.randrange(1, 20))] if action == "sign_batch" and allowed else None
            sent = rng.randrange(10_000, 5_000_000) if allowed and action in ("proxy", "fetch") else None
            encoded = encode_fields(
                at, f"req-{i:09d}", action, dataset, None if keys else key(rng), "allow" if allowed else "deny",
                "ml-team" if allowed else None, reason, status, f"10.0.{i % 250}.{i % 199}",
                AGENTS[int(rng.random() ** 3 * len(AGENTS))], who, "hit" if i % 3 else "miss",
                round(rng.random() * 20, 3), keys, 0 if keys else None, sent, "v42")
            batch.append(chains[i & 1].seal(encoded))
            if len(batch) >= 10_000:
                fh.write(b"".join(batch))
                batch.clear()
        fh.write(b"".join(batch))
    return time.perf_counter() - started


def measure(*args: str) -> dict[str, float | int]:
    """Seconds, peak RSS (MB, the child's own ``ru_maxrss``) and exit code of one ``gateway`` command."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "gateway", *args], cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "exit": child.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/audit-bench.jsonl"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--measure", action="store_true", help="then time the report and take its peak RSS")
    parser.add_argument("--format", choices=("html", "csv", "json"), default="html")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here, as JSON")
    args = parser.parse_args()
    seconds = generate(args.out, args.records, args.seed)
    size = args.out.stat().st_size
    print(f"wrote {args.records:,} records ({size / 1e6:,.0f} MB) to {args.out} in {seconds:.1f} s "
          f"({args.records / seconds:,.0f} records/s)")
    results: dict[str, object] = {"records": args.records, "bytes": size, "generate_seconds": round(seconds, 1)}
    if args.measure:
        out = args.out.with_suffix(f".report.{args.format}")
        runs = {"verify": measure("audit", "verify", str(args.out)),
                "report": measure("audit", "report", "--format", args.format, "--out", str(out), str(args.out))}
        for name, run in runs.items():
            print(f"gateway audit {name}: {run['seconds']} s ({args.records / max(run['seconds'], 0.1):,.0f} "
                  f"records/s), peak RSS {run['peak_rss_mb']} MB, exit {run['exit']}")
        results |= runs | {"report_format": args.format}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
