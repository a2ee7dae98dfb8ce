"""A storage site for the browser matrix: s3rver over HTTPS on its own loopback address, with buckets
whose CORS a test chooses (``*``, one vendor origin, or none), as a company sets on a real bucket.

    with running_storage(ca, "127.0.0.3", {"open": ["*"], "vendor": [vendor.origin]}) as endpoint:
        client = storage_client(endpoint, ca)      # boto3, trusting the test CA
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from tests.browsers.tls import TestCA
from tests.s3rver.harness import ACCESS_KEY, NODE_FLAGS, SECRET_KEY, install
from tests.support import free_port, need, stop_process, wait_for_line

SCRIPT = Path(__file__).with_name("storage.js")
_READY = re.compile(r"^STORAGE READY (.+)")


def cors_xml(origins: list[str]) -> str:
    """The bucket CORS a company sets for browser reads: GET and HEAD from ``origins``, any request
    header (``Range``), and the response headers a loader reads."""
    allowed = "".join(f"<AllowedOrigin>{escape(origin)}</AllowedOrigin>" for origin in origins)
    return ("<CORSConfiguration><CORSRule>" + allowed + "<AllowedMethod>GET</AllowedMethod>"
            "<AllowedMethod>HEAD</AllowedMethod><AllowedHeader>*</AllowedHeader>"
            "<ExposeHeader>Content-Range</ExposeHeader><ExposeHeader>Content-Length</ExposeHeader>"
            "<ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds></CORSRule></CORSConfiguration>")


@contextlib.contextmanager
def running_storage(ca: TestCA, host: str, buckets: dict[str, list[str] | None],
                    *, timeout: float = 30) -> Iterator[str]:
    """s3rver on ``https://<host>:<free port>`` (``host`` a 127.x address) with these buckets, each
    with CORS for the listed origins (None: no CORS); yields the endpoint."""
    if not host.startswith("127."):
        raise ValueError(f"the storage binds to loopback only, not {host}")
    node = shutil.which("node")
    need(node is not None, "node is needed to run s3rver")
    assert node is not None
    modules = install()
    leaf = ca.issue(host)
    with tempfile.TemporaryDirectory(prefix="storage-") as tmp:
        config = Path(tmp) / "config.json"
        (Path(tmp) / "data").mkdir()
        config.write_text(json.dumps({
            "address": host, "port": free_port(), "directory": str(Path(tmp) / "data"),
            "cert": str(leaf.cert), "key": str(leaf.key),
            "buckets": [{"name": name, "cors": cors_xml(origins) if origins else None}
                        for name, origins in buckets.items()]}))
        log = (Path(tmp) / "stderr.log").open("w")
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [node, *NODE_FLAGS, str(SCRIPT), str(config)], stdout=subprocess.PIPE, stderr=log, text=True,
            env={"PATH": "/usr/bin:/bin", "NODE_PATH": str(modules)})
        try:
            try:
                endpoint = wait_for_line(proc, _READY, timeout, "the storage")
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{Path(log.name).read_text()[-2000:]}") from None
            yield endpoint
        finally:
            stop_process(proc)
            log.close()


def storage_client(endpoint: str, ca: TestCA) -> BaseClient:
    """A boto3 client for the storage (path-style, s3rver's account), trusting the test CA."""
    return boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                 region_name="us-east-1").client(
        "s3", endpoint_url=endpoint, verify=str(ca.cert),
        # Over HTTPS botocore would send an unsigned, checksum-trailer payload, which s3rver refuses.
        config=Config(s3={"addressing_style": "path", "payload_signing_enabled": True}, signature_version="s3v4",
                      request_checksum_calculation="when_required"))
