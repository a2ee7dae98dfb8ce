"""``GET /v1/datasets/{dataset}/index``: listing is its own grant, pages through a sealed cursor,
shows only what ``allow_keys`` lets through (as gateway URLs that work), refuses bad parameters with
precise errors, and tells a stranger nothing more than for any other dataset."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import assert_error
from tests.support import RunningGateway

KEYS = [f"images/{i:02d}.png" for i in range(7)] + ["images/deep/x.pcd"]
POLICY = """version: 1
audit:
  sinks: [{{kind: file, path: "{audit}"}}]
datasets:
  listable:
    backend: {{kind: local, path: "{data}"}}
    allow_keys: ["images/**"]
    rules: [{{name: office, anonymous: true, networks: [127.0.0.0/8], grants: [read, list]}}]
  readonly:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: office, anonymous: true, networks: [127.0.0.0/8]}}]
  elsewhere:
    backend: {{kind: local, path: "{data}"}}
    rules: [{{name: lab, anonymous: true, networks: [10.0.0.0/8], grants: [list]}}]
"""


@pytest.fixture
def gw(gateway_server: Callable[..., RunningGateway], tmp_path: Path) -> RunningGateway:
    data = tmp_path / "data"
    for key in [*KEYS, "secret/plan.txt"]:
        (data / key).parent.mkdir(parents=True, exist_ok=True)
        (data / key).write_bytes(key.encode())
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(audit=tmp_path / "audit.jsonl", data=data))
    return gateway_server(config=policy)


def index(gw: RunningGateway, dataset: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{gw.url}/v1/datasets/{dataset}/index", params=params, timeout=10)


def test_pages_through_everything_allow_keys_lets_through(gw: RunningGateway) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(10):
        response = index(gw, "listable", limit=3, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "private, no-store"
        page = response.json()
        assert page["dataset"] == "listable" and len(page["objects"]) <= 3
        seen += page["objects"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [item["key"] for item in seen] == sorted(KEYS)  # secret/plan.txt is outside allow_keys
    first = seen[0]
    assert first["size"] == len(first["key"]) and first["content_type"] == "image/png" and first["etag"]
    assert first["url"] == f"{gw.url}/v1/datasets/listable/objects/images/00.png"
    followed = httpx.get(first["url"], follow_redirects=True, timeout=10)
    assert followed.status_code == 200 and followed.content == b"images/00.png"


def test_a_prefix_narrows_the_listing(gw: RunningGateway) -> None:
    page = index(gw, "listable", prefix="images/deep/").json()
    assert [item["key"] for item in page["objects"]] == ["images/deep/x.pcd"] and page["next_cursor"] is None
    assert index(gw, "listable", prefix="secret/").json()["objects"] == []  # filtered, not revealed


def test_reading_does_not_grant_listing(gw: RunningGateway) -> None:
    # The office may read "readonly" but no rule lets it list: for listing it is a stranger, and
    # (without a credential) hears what it would hear for any dataset.
    response, unknown = index(gw, "readonly"), index(gw, "no-such-dataset")
    assert response.status_code == 401, response.text
    assert response.json()["detail"] == unknown.json()["detail"] and "images" not in response.text
    assert httpx.get(f"{gw.url}/v1/datasets/readonly/objects/images/00.png", timeout=10).status_code == 302


def test_a_stranger_learns_nothing(gw: RunningGateway) -> None:
    # No rule admits this caller: the same answer as for a dataset that does not exist.
    stranger, unknown = index(gw, "elsewhere"), index(gw, "no-such-dataset")
    assert stranger.status_code == unknown.status_code == 401
    assert stranger.json()["error"] == unknown.json()["error"]


def test_cursors_are_sealed_to_their_listing(gw: RunningGateway) -> None:
    cursor = index(gw, "listable", limit=2).json()["next_cursor"]
    assert cursor
    body, _, mac = cursor.partition(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    for bad in (tampered, cursor + "x", "not-a-cursor", body + "."):
        assert_error(index(gw, "listable", limit=2, cursor=bad), 400, "bad_request")
    # A good cursor, moved to another prefix, is refused too.
    assert_error(index(gw, "listable", limit=2, cursor=cursor, prefix="images/deep/"), 400, "bad_request")


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "limit=-1", "prefix=a&prefix=b",
                                   "colour=red", "prefix=../", "prefix=%00", "prefix=images/%2e%2e/"])
def test_bad_parameters_are_precise_400s(gw: RunningGateway, query: str) -> None:
    response = httpx.get(f"{gw.url}/v1/datasets/listable/index?{query}", timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"] in ("bad_request", "invalid_key")


def test_each_listing_is_audited_with_what_it_showed(gw: RunningGateway, tmp_path: Path) -> None:
    assert index(gw, "listable", prefix="images/deep/").status_code == 200
    assert index(gw, "readonly").status_code == 401
    time.sleep(0.2)  # the audit writer drains its queue every 25 ms
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    listed = [r for r in records if r["action"] == "list"]
    assert [(r["dataset"], r["decision"], r["keys"]) for r in listed] == [
        ("listable", "allow", ["images/deep/x.pcd"]), ("readonly", "deny", None)]


def test_an_s3_dataset_pages_through_the_storages_own_continuation(
        gateway_server: Callable[..., RunningGateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same listing on s3rver (which checks signatures; its truncated ListObjectsV2 needs node's
    legacy OpenSSL provider): one storage page per request, the cursor wrapping S3's token."""
    from tests.s3rver.harness import ACCESS_KEY, SECRET_KEY, running_s3rver, s3_client

    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
                        ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(name, value)
    with running_s3rver() as endpoint:
        client = s3_client(endpoint)
        client.create_bucket(Bucket="acme-raw")
        for key in [*KEYS, "secret/plan.txt"]:
            client.put_object(Bucket="acme-raw", Key=f"ds/{key}", Body=key.encode())
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"""version: 1
datasets:
  raw:
    backend: {{kind: s3, bucket: acme-raw, prefix: ds/, endpoint_url: "{endpoint}", addressing_style: path}}
    allow_keys: ["images/**"]
    rules: [{{name: office, anonymous: true, networks: [127.0.0.0/8], grants: [list]}}]
""")
        gw = gateway_server(config=policy)
        seen, cursor, pages = [], None, 0
        while True:
            response = index(gw, "raw", limit=3, **({"cursor": cursor} if cursor else {}))
            assert response.status_code == 200, response.text
            page = response.json()
            seen += [item["key"] for item in page["objects"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None or pages > 10:
                break
        assert sorted(seen) == sorted(KEYS) and pages == 3  # 9 objects in pages of 3, the secret filtered out
        # Read and list are separate grants: this rule lists only.
        assert httpx.get(f"{gw.url}/v1/datasets/raw/objects/images/00.png", timeout=10).status_code == 401
