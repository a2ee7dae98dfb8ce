"""``gateway urls``: turn object keys into the gateway URLs handed to the vendor instead of bucket
URLs, as bare lines, CSV, JSON, or the vendor's own import file (gateway/cli/manifests.py).

Keys come from stdin, or from listing the dataset through its backend (``--list``): the same
backend, credentials and prefix the server signs with, built by the composition root; the CLI holds
no storage client of its own. Without ``--config`` the embedded default is used, as ``gateway serve``
runs it (the dataset ``local`` over ``--local-dir``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gateway.cli.common import EPILOG, Subparsers, settings_from
from gateway.cli.manifests import FORMATS, Item, Writer, make_writer
from gateway.errors import ConfigError, GatewayError, InvalidKey
from gateway.keys import MAX_KEY_BYTES, validate_key
from gateway.media import content_type
from gateway.routes import object_path
from gateway.settings import Settings

if TYPE_CHECKING:  # imported when the command runs: every other command (and --help) starts without the app
    from gateway.app.offline import OfflinePolicy

PAGE = 1000  # objects asked of the storage at a time


def gateway_url(base_url: str, dataset: str, key: str) -> str:
    return base_url.rstrip("/") + object_path(dataset, key)


class Emitter:
    """Validates each key as the gateway will, and writes the ones it would serve."""

    def __init__(self, writer: Writer, *, base_url: str, dataset: str, max_key_bytes: int, progress: bool,
                 err: IO[str]) -> None:
        self.writer = writer
        self.base_url = base_url
        self.dataset = dataset
        self.max_key_bytes = max_key_bytes
        self.progress = progress
        self.err = err
        self.written = self.skipped = 0

    def emit(self, raw: str, media_type: str | None = None) -> None:
        try:
            key = validate_key(raw, self.max_key_bytes)
        except InvalidKey as exc:
            self.skip(raw, exc.detail)
            return
        item = Item(key, gateway_url(self.base_url, self.dataset, key), media_type or content_type(key))
        reason = self.writer.add(item)
        if reason is not None:
            self.skip(raw, reason)
            return
        self.written += 1
        if self.progress and self.written % 1000 == 0:
            print(f"\rgateway urls: {self.written} keys", end="", file=self.err, flush=True)

    def skip(self, raw: str, reason: str) -> None:
        self.skipped += 1
        print(f"gateway urls: skipped {raw[:200]!r}: {reason}", file=self.err)

    def close(self) -> None:
        self.writer.close()
        if self.progress and self.written >= 1000:
            print(f"\rgateway urls: {self.written} keys", file=self.err)


async def _listed(settings: Settings, loaded: OfflinePolicy, dataset: str, prefix: str, emitter: Emitter) -> None:
    from gateway.app.offline import dataset_lister

    async with dataset_lister(settings, loaded, dataset) as lister:
        token: str | None = None
        while True:
            page = await lister.list_page(prefix, token, PAGE)
            for obj in page.objects:
                emitter.emit(obj.key, obj.content_type)
            token = page.next_token
            if token is None:
                return


def _base_url(args: argparse.Namespace, settings: Settings) -> str:
    base_url = args.base_url or settings.public_url
    if base_url is None and settings.config is None:
        base_url = settings.base_url()  # the embedded default's own address, as `gateway serve` listens
    if base_url is None:
        raise ConfigError("--base-url", ["give the gateway's public URL (or set GATEWAY_PUBLIC_URL), "
                                         "e.g. https://gateway.acme.example"])
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError("--base-url", ["give the gateway's public URL, e.g. https://gateway.acme.example"])
    return base_url


def cmd_urls(args: argparse.Namespace) -> int:
    from gateway.app.offline import load_offline_policy

    settings = settings_from({"config": args.config, "local_dir": args.local_dir})
    loaded = load_offline_policy(settings)
    dataset = loaded.policy.datasets.get(args.dataset)
    if dataset is None:
        raise ConfigError(loaded.source, [f"no dataset {args.dataset!r}; the policy has "
                                          f"{', '.join(sorted(loaded.policy.datasets))}"])
    base_url = _base_url(args, settings)
    if args.prefix and not args.list:
        raise ConfigError("--prefix", ["--prefix scopes a listing: give it with --list"])
    if args.format == "labelbox" and not base_url.startswith("https://"):
        print("gateway urls: warning: Labelbox imports https URLs only; give the gateway's https address as "
              "--base-url", file=sys.stderr)
    prefix = getattr(dataset.backend, "prefix", "")
    writer = make_writer(args.format, sys.stdout, data_key=args.data_key, id_prefix=args.id_prefix)
    emitter = Emitter(writer, base_url=base_url, dataset=args.dataset, progress=sys.stderr.isatty(), err=sys.stderr,
                      max_key_bytes=MAX_KEY_BYTES - len(prefix.encode()))
    failed = False
    if args.list:
        try:
            asyncio.run(_listed(settings, loaded, args.dataset, args.prefix or "", emitter))
        except GatewayError as exc:  # the storage's failure, already in the gateway's words
            print(f"gateway urls: listing {args.dataset} failed: {exc.detail}", file=sys.stderr)
            failed = True
    else:
        for line in sys.stdin:
            if line.strip():
                emitter.emit(line.rstrip("\r\n"))
    emitter.close()
    return 1 if failed or emitter.skipped else 0


def register(sub: Subparsers) -> None:
    urls = sub.add_parser("urls", help="write gateway URLs for the vendor: lines, CSV, JSON or its import file",
                          description=(
        "Write the gateway URL of each object key, as bare lines, CSV, JSON, or a labeling vendor's own import "
        "file (labelbox, labelstudio, encord, scale: docs/vendors.md). Keys come from stdin (one per line) or, "
        "with --list, from listing the dataset through its backend (with the pod's or your credentials). Hand "
        "these URLs to the vendor instead of bucket URLs: they never expire. Keys the gateway would refuse, and "
        "objects a format has no place for, are skipped and reported on stderr (exit 1)."), epilog=EPILOG)
    urls.add_argument("dataset")
    urls.add_argument("--base-url", help="the gateway's public URL, e.g. https://gw.acme.example (GATEWAY_PUBLIC_URL; "
                      "without --config, the address `gateway serve` listens on)")
    urls.add_argument("--config", type=Path, help="policy file (GATEWAY_CONFIG); without it, the embedded default")
    urls.add_argument("--local-dir", type=Path, help="folder of the embedded default's dataset local "
                      "(GATEWAY_LOCAL_DIR; ./data)")
    urls.add_argument("--list", action="store_true", help="list the dataset's objects instead of reading stdin")
    urls.add_argument("--prefix", default="", help="with --list: only the objects under this prefix of the dataset")
    urls.add_argument("--format", choices=FORMATS, default="lines")
    urls.add_argument("--data-key", help="labelstudio: the task data key the labeling config reads ($image...); "
                      "default by media type")
    urls.add_argument("--id-prefix", default="", help="prepended to the key where the format has an id (Labelbox "
                      "global keys are unique in the whole organization: e.g. the dataset's name and a slash)")
    urls.set_defaults(func=cmd_urls)
