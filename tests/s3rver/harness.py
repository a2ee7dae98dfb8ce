"""Run a real S3-compatible server (``@20minutes/s3rver``) for tests that need one.

It checks SigV4 signatures (header and query) and presigned-URL expiry, which is exactly what the
S3 backend's tests need. Usage from any test directory::

    from tests.s3rver.harness import running_s3rver, s3_client

    with running_s3rver() as endpoint:          # "http://127.0.0.1:PORT"
        s3_client(endpoint).create_bucket(Bucket="b")

It is installed from the project's package-lock.json (``scripts/npm-ci``). When node or npm is
missing the caller's test is skipped with a printed reason, except under
``CI=true``, where that is an error: CI must never silently skip the real-server tests.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from botocore.client import BaseClient
from botocore.config import Config

from tests.support import node_package, stop_process, wait_for_line

PACKAGE = "@20minutes/s3rver"
VERSION = "4.0.4"
ACCESS_KEY = "S3RVER"  # s3rver's built-in account
SECRET_KEY = "S3RVER"
SERVER_JS = Path(__file__).with_name("server.js")
# s3rver 4.0.4 encrypts ListObjectsV2 continuation tokens with DES, which OpenSSL 3 (Node 17 and
# later) only offers through its legacy provider: without it every truncated listing is a 500.
NODE_FLAGS = ("--openssl-legacy-provider",)
_READY = re.compile(r"^S3RVER READY (.+)")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        raise RuntimeError(f"s3rver is required in CI: {reason}")
    print(f"\nskipping s3rver tests: {reason}", file=sys.stderr)
    pytest.skip(reason)


def install() -> Path:
    """The ``node_modules`` folder holding s3rver as package-lock.json pins it (``npm ci``)."""
    folder = node_package(PACKAGE)
    if json.loads((folder / "package.json").read_text()).get("version") != VERSION:
        raise AssertionError(f"package-lock.json pins {PACKAGE} at another version than {VERSION}")
    return folder.parents[1]


@contextmanager
def running_s3rver(*, port: int = 0, timeout: float = 30.0) -> Iterator[str]:
    """Start s3rver on 127.0.0.1 (``port=0``: a free port the OS picks) and yield its endpoint URL.

    The data directory is a fresh temporary directory; the process is stopped by its PID.
    """
    modules = install()
    node = shutil.which("node")
    if node is None:
        _unavailable("node is needed to run s3rver")
    with tempfile.TemporaryDirectory(prefix="s3rver-") as data, tempfile.TemporaryFile("w+") as log:
        env = {**os.environ, "NODE_PATH": str(modules)}
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [str(node), *NODE_FLAGS, str(SERVER_JS), str(port), data],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        try:
            try:
                endpoint = wait_for_line(proc, _READY, timeout, "s3rver")
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}\n{log.read()[-2000:]}") from None
            yield endpoint
        finally:
            stop_process(proc)


def s3_client(endpoint: str, *, region: str = "us-east-1") -> BaseClient:
    """A boto3 client for the running server (path-style, s3rver's credentials)."""
    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=region
    ).client(
        "s3",
        endpoint_url=endpoint,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
