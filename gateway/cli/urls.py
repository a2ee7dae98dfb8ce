"""``gateway urls``: turn object keys into the gateway URLs handed to the vendor instead of bucket URLs."""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from gateway.cli.common import EPILOG, Subparsers, config_path
from gateway.config import Dataset, GcsBackend, LocalBackend, S3Backend
from gateway.errors import ConfigError, InvalidKey
from gateway.keys import MAX_KEY_BYTES, validate_key
from gateway.routes import object_path


def gateway_url(base_url: str, dataset: str, key: str) -> str:
    return base_url.rstrip("/") + object_path(dataset, key)


def _strip(prefix: str, names: Iterable[str]) -> Iterator[str]:
    for name in names:
        if name.startswith(prefix) and not name.endswith("/"):
            yield name[len(prefix):]


def list_keys(dataset: Dataset) -> Iterator[str]:
    """Every object under the dataset's prefix (or folder), relative to it, as the gateway names them."""
    backend = dataset.backend
    match backend:
        case S3Backend():
            import boto3
            from botocore.config import Config

            client = boto3.client("s3", region_name=backend.region, endpoint_url=backend.endpoint_url,
                                  config=Config(s3={"addressing_style": backend.addressing_style}))
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket, Prefix=backend.prefix)
            yield from _strip(backend.prefix, (obj["Key"] for page in pages for obj in page.get("Contents", [])))
        case GcsBackend():
            from google.cloud import storage

            gcs: Any = storage.Client()
            yield from _strip(backend.prefix, (blob.name for blob in gcs.list_blobs(backend.bucket,
                                                                                   prefix=backend.prefix)))
        case LocalBackend():
            root = os.path.realpath(backend.path)
            for folder, dirs, files in os.walk(root):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    if os.path.realpath(path).startswith(root + os.sep):  # links leaving the folder are not served
                        yield os.path.relpath(path, root).replace(os.sep, "/")


def write_urls(keys: Iterable[str], *, base_url: str, dataset: str, fmt: str, out: IO[str],
               progress: bool, max_key_bytes: int = MAX_KEY_BYTES) -> tuple[int, int]:
    """Write one URL per key; returns (written, skipped). Keys the gateway would refuse are skipped."""
    written = skipped = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(["key", "url"])
    if fmt == "json":
        out.write("[")
    for raw in keys:
        try:
            key = validate_key(raw, max_key_bytes)
        except InvalidKey as exc:
            skipped += 1
            print(f"gateway urls: skipped {raw[:200]!r}: {exc.detail}", file=sys.stderr)
            continue
        url = gateway_url(base_url, dataset, key)
        if fmt == "csv" and writer is not None:
            writer.writerow([key, url])
        elif fmt == "json":
            out.write(("," if written else "") + "\n  " + orjson.dumps({"key": key, "url": url}).decode())
        else:
            out.write(url + "\n")
        written += 1
        if progress and written % 1000 == 0:
            print(f"\rgateway urls: {written} keys", end="", file=sys.stderr, flush=True)
    if fmt == "json":
        out.write("\n]\n" if written else "]\n")
    if progress and written >= 1000:
        print(f"\rgateway urls: {written} keys", file=sys.stderr)
    return written, skipped


def run(*, config: Path, dataset: str, base_url: str, listing: bool, fmt: str) -> int:
    from gateway.config import load_policy

    policy, _ = load_policy(config)
    if dataset not in policy.datasets:
        raise ConfigError(str(config), [f"no dataset {dataset!r}; the file has {', '.join(policy.datasets)}"])
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError("--base-url", ["give the gateway's public URL, e.g. https://gateway.acme.example"])
    keys: Iterable[str]
    if listing:
        keys = list_keys(policy.datasets[dataset])
    else:
        keys = (line.rstrip("\r\n") for line in sys.stdin if line.strip())
    prefix = getattr(policy.datasets[dataset].backend, "prefix", "")
    written, skipped = write_urls(keys, base_url=base_url, dataset=dataset, fmt=fmt, out=sys.stdout,
                                  progress=sys.stderr.isatty(), max_key_bytes=MAX_KEY_BYTES - len(prefix.encode()))
    return 0 if not skipped else 1


def cmd_urls(args: argparse.Namespace) -> int:
    return run(config=config_path(args), dataset=args.dataset, base_url=args.base_url,
                        listing=args.list, fmt=args.format)


def register(sub: Subparsers) -> None:
    urls = sub.add_parser("urls", help="turn object keys into gateway URLs for the vendor", description=(
        "Print the gateway URL of each object key: keys come from stdin (one per line) or, with --list, "
        "from listing the dataset's bucket prefix or folder (with the pod's or your credentials). Hand "
        "these URLs to the vendor instead of bucket URLs. Keys the gateway would refuse are skipped and "
        "reported on stderr (exit 1)."), epilog=EPILOG)
    urls.add_argument("dataset")
    urls.add_argument("--base-url", required=True, help="the gateway's public URL, e.g. https://gw.acme.example")
    urls.add_argument("--config", type=Path, help="policy file (GATEWAY_CONFIG)")
    urls.add_argument("--list", action="store_true", help="list the dataset's objects instead of reading stdin")
    urls.add_argument("--format", choices=["lines", "csv", "json"], default="lines")
    urls.set_defaults(func=cmd_urls)
