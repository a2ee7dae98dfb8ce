"""``gateway audit``: verify the audit log's chains, and report on who read what."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import Subparsers, settings_from
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.audit.anchor import Anchors
    from gateway.audit.sources import Line, StreamReader
    from gateway.audit.verify import VerifyResult


def parse_time(text: str) -> float:
    """``2024-01-31`` (midnight UTC), an ISO 8601 time (UTC unless it says otherwise), or Unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a date (2024-01-31), an ISO 8601 time "
                                         f"(2024-01-31T12:00:00Z) or Unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _redis(url: str | None) -> StreamReader:
    from gateway.app.redis import redis_options
    from gateway.redis.connect import sync_client
    from gateway.redis.url import RedisUrlError, parse_redis_url

    url = url or os.environ.get("GATEWAY_REDIS_URL")
    if not url:
        raise ConfigError("--redis-url", ["give --redis-url URL or set GATEWAY_REDIS_URL to read a stream"])
    try:
        target = parse_redis_url(url)
    except RedisUrlError as exc:
        raise ConfigError("--redis-url", [str(exc)]) from None
    # The GATEWAY_REDIS_* settings (TLS CA, password, IAM) apply; a report may wait longer than a request.
    options = redis_options(settings_from({"redis_url": url}))
    options = dataclasses.replace(options, timeout=max(options.timeout, 10.0))
    return sync_client(target, options, options.credentials(target))


def _files(args: argparse.Namespace) -> list[Path]:
    from gateway.audit.sources import in_order

    paths = [Path(name) for name in args.files]
    for path in paths:
        if not path.is_file():
            raise ConfigError(str(path), ["cannot read the file: no such file"])
    if len(paths) > 1 and not args.as_given:
        ordered = in_order(paths)
        if ordered != paths:
            print("in the order written: " + " ".join(map(str, ordered)), file=sys.stderr)
        paths = ordered
    return paths


def _lines(args: argparse.Namespace, paths: list[Path]) -> Iterator[Line]:
    from gateway.audit.sources import file_lines, stream_lines

    yield from file_lines(paths)
    if args.stream:
        yield from stream_lines(_redis(args.redis_url), args.stream)


def _anchors(args: argparse.Namespace) -> tuple[Anchors | None, VerifyResult | None]:
    from gateway.audit.sources import file_lines, load_anchors, stream_lines

    if not args.checkpoints and not args.checkpoint_stream:
        return None, None
    paths = [Path(name) for name in args.checkpoints or []]
    for path in paths:
        if not path.is_file():
            raise ConfigError(str(path), ["cannot read the checkpoint file: no such file"])
    lines: Iterable[Line] = file_lines(paths)
    if args.checkpoint_stream:  # MAXLEN trims a stream's oldest entries: its chain may start anywhere
        lines = itertools.chain(lines, stream_lines(_redis(args.redis_url), args.checkpoint_stream))
    return load_anchors(lines, partial=bool(args.checkpoint_stream))


def _verify(args: argparse.Namespace, paths: list[Path],
            add: Callable[[dict[str, Any]], None] | None = None) -> VerifyResult:
    """One pass over every source: verify, and hand each record to ``add`` (the report's)."""
    from gateway.audit.verify import ChainVerifier

    anchors, own = _anchors(args)
    if own is not None and not own.ok:
        for problem in own.problems:
            print(f"checkpoints: {problem}", file=sys.stderr)
    # A stream's oldest entries are trimmed by MAXLEN: its chains may start anywhere.
    verifier = ChainVerifier(partial=args.partial or bool(args.stream), anchors=anchors)
    try:
        for source, number, line in _lines(args, paths):
            record = verifier.check(line, source, number)
            if record is not None and add is not None:
                add(record)
    except OSError as exc:
        raise ConfigError(str(getattr(exc, "filename", None) or "audit log"),
                          [f"cannot read the file: {exc.strerror or exc}"]) from None
    result = verifier.result()
    if own is not None and not own.ok:
        result = dataclasses.replace(result, ok=False, problem_count=result.problem_count + own.problem_count,
                                     problems=result.problems + own.problems)
    return result


def _label(args: argparse.Namespace, paths: list[Path]) -> str:
    return " + ".join([str(p) for p in paths] + ([f"stream {args.stream}"] if args.stream else [])) or "-"


def cmd_audit_verify(args: argparse.Namespace) -> int:
    paths = _files(args)
    if not paths and not args.stream:
        raise ConfigError("audit verify", ["give FILE ... or --stream NAME"])
    result = _verify(args, paths)
    label = _label(args, paths)
    anchored = "" if result.checkpoints_matched is None else f"; {result.checkpoints_matched} checkpoints matched"
    if result.ok:
        print(f"{label}: OK, {result.records} records in {result.chains} chains{anchored}")
    else:
        for problem in result.problems:
            print(str(problem), file=sys.stderr)
        if result.problem_count > len(result.problems):
            print(f"… and {result.problem_count - len(result.problems)} more problems", file=sys.stderr)
        print(f"{label}: BROKEN, {result.problem_count} problem(s) in {result.records} records", file=sys.stderr)
    for note in result.notes:
        print(f"  {note}")
    return 0 if result.ok else 1


def cmd_audit_report(args: argparse.Namespace) -> int:
    from gateway.audit.report import Budget, Filters, Report
    from gateway.audit.report_formats import render

    paths = _files(args)
    if not paths and not args.stream:
        raise ConfigError("audit report", ["give FILE ... or --stream NAME"])
    report = Report(Filters(args.since, args.until, frozenset(args.dataset or ()), args.principal),
                    Budget(objects=args.max_objects))
    result = _verify(args, paths, report.add)
    text = render(report.summary(result, [str(p) for p in paths] + ([args.stream] if args.stream else [])),
                  args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    verdict = "chain intact" if result.ok else f"CHAIN BROKEN: {result.problems[0]}"
    print(f"{_label(args, paths)}: {verdict}; {report.matched} of {report.read} records in the report",
          file=sys.stderr)
    return 0 if result.ok else 1


def _sources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="audit files, rotated ones too (.gz read as is); "
                        "put in the order they were written, whatever order they are given in")
    parser.add_argument("--as-given", action="store_true", help="keep the files in the order given")
    parser.add_argument("--redis-url", help="for --stream and --checkpoint-stream (default: GATEWAY_REDIS_URL)")
    parser.add_argument("--stream", metavar="NAME", help="read the records from this Redis stream too")
    parser.add_argument("--checkpoints", action="append", metavar="FILE",
                        help="checkpoint file(s) to hold the chains against: then records removed from the end "
                        "of a chain, or a rewritten chain, are found too (repeatable)")
    parser.add_argument("--checkpoint-stream", metavar="NAME", help="checkpoints from this Redis stream")
    parser.add_argument("--partial", action="store_true", help="the records may start anywhere in a chain "
                        "(an excerpt): a chain's first records are then not checked")


def register(sub: Subparsers) -> None:
    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = audit_sub.add_parser("verify", help="check the audit log's hash chains", description=(
        "Check the hash chains of audit files (one file, or rotated files as one sequence) or of a Redis stream. "
        "Names the first line that was changed, removed or moved and exits 1 if there is one. Without "
        "--checkpoints, records removed from the end of a chain cannot be seen: see docs/audit.md."))
    _sources(verify)
    verify.set_defaults(func=cmd_audit_verify)
    report = audit_sub.add_parser("report", help="who read what, and what was refused and why", description=(
        "Verify the chains, then report per dataset: principals, objects and bytes read, requests per day, "
        "refusals by reason, first and last seen. A broken chain is the report's first line (exit 1, the "
        "report is still written). Memory stays bounded whatever the log's size."))
    _sources(report)
    report.add_argument("--since", type=parse_time, help="first moment included: 2024-01-01 (UTC), an ISO 8601 "
                        "time or Unix seconds")
    report.add_argument("--until", type=parse_time, help="first moment left out (same forms)")
    report.add_argument("--dataset", action="append", help="only this dataset (repeatable)")
    report.add_argument("--principal", help="only this principal: subject, email or key id")
    report.add_argument("--format", choices=("html", "csv", "json"), default="html", help="html (default): one "
                        "self-contained page; csv: one row per fact; json")
    report.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    report.add_argument("--max-objects", type=int, default=20_000, metavar="N",
                        help="distinct objects tracked over all datasets (the rest are counted together)")
    report.set_defaults(func=cmd_audit_report)
