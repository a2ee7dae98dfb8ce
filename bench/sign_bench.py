"""Per-URL signing cost: boto3's generate_presigned_url (client reused) and azure-storage-blob's
generate_blob_sas vs the gateway's signers.

Run from the repository root:  .venv/bin/python bench/sign_bench.py [--n 20000]
No network and no real credentials are used. Target: our S3 signer at least 10x faster than boto3.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from gateway.backends.azure import AzureBackend  # noqa: E402
from gateway.backends.azure_sas import DelegationKey, SasSigner, iso, sdk_blob_url  # noqa: E402
from gateway.backends.gcs import GcsBackend  # noqa: E402
from gateway.backends.s3 import S3Backend  # noqa: E402
from gateway.config import GcsBackend as GcsConfig  # noqa: E402
from gateway.config import S3Backend as S3Config  # noqa: E402
from gateway.config.backends import AzureBackend as AzureConfig  # noqa: E402
from gateway.sigv4.presign import Credentials, SigV4Presigner  # noqa: E402

KEYS = [f"datasets/driving/images/2024/frame_{i:06d}.jpg" for i in range(1000)]
ACCESS, SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # Azurite's


def per_call(fn: Callable[[int], object], n: int) -> float:
    """Best of three runs, in microseconds per call."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="URLs per measurement for the fast signers")
    args = parser.parse_args()
    n = args.n

    session = boto3.session.Session(
        aws_access_key_id=ACCESS, aws_secret_access_key=SECRET, region_name="us-west-2"
    )
    client = session.client("s3", config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))
    config = S3Config(kind="s3", bucket="acme-raw", region="us-west-2", addressing_style="virtual")
    backend = S3Backend(config, session=session)
    presigner = SigV4Presigner(backend.base_url, region="us-west-2")
    credentials = Credentials(ACCESS, SECRET)
    now = int(time.time())

    def boto(i: int) -> object:
        params = {"Bucket": "acme-raw", "Key": KEYS[i % 1000]}
        return client.generate_presigned_url("get_object", Params=params, ExpiresIn=300)

    boto3_us = per_call(boto, max(n // 10, 500))
    ours_us = per_call(
        lambda i: presigner.presign(KEYS[i % 1000], credentials, signed_at=now, expires=300), n
    )

    async def batch() -> None:
        await backend.sign(KEYS, signed_at=now, expires_in=300)

    batch_us = per_call(lambda _: asyncio.run(batch()), max(n // 1000, 5)) / len(KEYS)

    sa = json.loads((ROOT / "tests/fixtures/gcs-v4/test_service_account.not-a-test.json").read_text())
    from google.oauth2 import service_account

    gcs = GcsBackend(
        GcsConfig(kind="gcs", bucket="acme-med"),
        credentials=service_account.Credentials.from_service_account_info(sa),
    )
    hmac_gcs = GcsBackend(
        GcsConfig(kind="gcs", bucket="acme-med", hmac_access_id_env="ID", hmac_secret_env="SECRET"),
        environ={"ID": "GOOG1EXAMPLE", "SECRET": "c2VjcmV0"},
    )

    async def gcs_batch(target: GcsBackend) -> None:
        await target.sign(KEYS, signed_at=now, expires_in=300)

    rsa_us = per_call(lambda _: asyncio.run(gcs_batch(gcs)), 1) / len(KEYS)
    gcs_hmac_us = per_call(lambda _: asyncio.run(gcs_batch(hmac_gcs)), max(n // 1000, 5)) / len(KEYS)

    azure_endpoint = "https://acmedata.blob.core.windows.net"
    azure_us = per_call(lambda i: sdk_blob_url(azure_endpoint, "acmedata", "raw", KEYS[i % 1000], key=AZURE_KEY,
                                               expiry=now + 300, protocol="https"), max(n // 10, 500))
    from azure.storage.blob import generate_blob_sas

    expiry = datetime.datetime.fromtimestamp(now + 300, datetime.UTC)
    sas_only_us = per_call(lambda i: generate_blob_sas("acmedata", "raw", KEYS[i % 1000], account_key=AZURE_KEY,
                                                       permission="r", expiry=expiry, protocol="https"),
                           max(n // 10, 500))
    azure_signer = SasSigner(azure_endpoint, account="acmedata", container="raw", protocol="https")
    lean_batch = azure_signer.batch(AZURE_KEY, expiry=now + 300)
    lean_us = per_call(lambda i: lean_batch.url(KEYS[i % 1000]), n)
    delegation = DelegationKey("oid", "tid", iso(now), iso(now + 14400), "b", "2026-10-06", AZURE_KEY, now + 14400.0)
    udk_batch = azure_signer.batch(delegation, expiry=now + 300)
    udk_us = per_call(lambda i: udk_batch.url(KEYS[i % 1000]), n)
    azure = AzureBackend(AzureConfig(kind="azure", account="acmedata", container="raw", credential="account_key",
                                     account_key_env="KEY"), environ={"KEY": AZURE_KEY})

    async def azure_sign() -> None:
        await azure.sign(KEYS, signed_at=now, expires_in=300)

    azure_batch_us = per_call(lambda _: asyncio.run(azure_sign()), max(n // 1000, 5)) / len(KEYS)

    print(f"{'signer':<52}{'µs/URL':>10}")
    print(f"{'boto3 generate_presigned_url (client reused)':<52}{boto3_us:>10.1f}")
    print(f"{'gateway SigV4Presigner.presign':<52}{ours_us:>10.1f}")
    print(f"{'gateway S3Backend.sign (batch of 1000)':<52}{batch_us:>10.1f}")
    print(f"{'gateway GcsBackend.sign, RSA key (batch of 1000)':<52}{rsa_us:>10.1f}")
    print(f"{'gateway GcsBackend.sign, HMAC key (batch of 1000)':<52}{gcs_hmac_us:>10.1f}")
    print(f"{'azure-storage-blob generate_blob_sas (SAS only)':<52}{sas_only_us:>10.1f}")
    print(f"{'azure-storage-blob generate_blob_sas + BlobClient.url':<52}{azure_us:>10.1f}")
    print(f"{'gateway SasSigner, account key':<52}{lean_us:>10.1f}")
    print(f"{'gateway SasSigner, user delegation key':<52}{udk_us:>10.1f}")
    print(f"{'gateway AzureBackend.sign (batch of 1000)':<52}{azure_batch_us:>10.1f}")
    ratio = boto3_us / ours_us
    print(
        f"\nS3 speed-up over boto3: {ratio:.1f}x (target >= 10x): {'OK' if ratio >= 10 else 'BELOW TARGET'}"
    )


if __name__ == "__main__":
    main()
