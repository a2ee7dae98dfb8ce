"""One contract for ``Lister.list_page``, run against every backend on its real server: s3rver,
fake-gcs-server, Azurite and a temporary folder. Pages are bounded and walk the whole dataset in key
order, a prefix scopes them, nothing outside the dataset's prefix is listed however the prefix is
written, folder markers are not objects, and a failing storage is the gateway's error, naming
nothing of the storage."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from gateway.backends import Listed, Lister, ListPage
from gateway.errors import BadGateway, GatewayError, InvalidKey, NotFound, Unavailable
from tests.backends.listing_support import (
    BUCKET,
    KINDS,
    OBJECTS,
    Store,
    azure_store,
    gcs_store,
    key_order,
    local_store,
    s3_store,
)
from tests.support import free_port


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Store]]:
    """Each kind's server, started on first use and stopped with the module."""
    started: dict[str, Store] = {}
    with ExitStack() as stack:
        def get(kind: str) -> Store:
            if kind not in started:
                folder = tmp_path_factory.mktemp(f"listing-{kind}")
                made = {"local": lambda: local_store(folder), "s3": s3_store, "gcs": lambda: gcs_store(folder),
                        "azure": azure_store}[kind]()
                started[kind] = stack.enter_context(made)
            return started[kind]

        yield get


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, servers: Callable[[str], Store]) -> Store:
    return servers(request.param)


@pytest.fixture(params=["s3", "gcs", "azure"])
def remote(request: pytest.FixtureRequest, servers: Callable[[str], Store]) -> Store:
    return servers(request.param)


def page(lister: Lister, prefix: str = "", start: str | None = None, limit: int = 1000) -> ListPage:
    return asyncio.run(lister.list_page(prefix, start, limit))


def walk(lister: Lister, prefix: str, limit: int) -> list[ListPage]:
    pages = [page(lister, prefix, None, limit)]
    while pages[-1].next_token is not None:
        assert len(pages) < 50, "the listing never ends"
        pages.append(page(lister, prefix, pages[-1].next_token, limit))
    return pages


def test_pages_walk_the_whole_dataset_in_key_order(store: Store) -> None:
    pages = walk(store.backend(), "", 7)
    keys = [obj.key for p in pages for obj in p.objects]
    assert sorted(keys) == sorted(OBJECTS) and len(set(keys)) == len(keys)  # every object once, nothing else
    if store.kind != "s3":  # S3 lists in UTF-8 byte order; s3rver in its file store's order ("a/b" < "a.txt")
        assert keys == key_order(list(OBJECTS))
    # A page holds at most the limit; a store's folder markers take room in its page, never in the result.
    assert all(len(p.objects) <= 7 for p in pages) and len(pages) >= len(OBJECTS) // 7
    assert len(pages[0].objects) >= 6


def test_a_prefix_scopes_the_listing(store: Store) -> None:
    lister = store.backend()
    for prefix in ("images/", "images/ca", "many/001", "a", "nothing-here/"):
        keys = [obj.key for p in walk(lister, prefix, 4) for obj in p.objects]
        assert key_order(keys) == key_order([k for k in OBJECTS if k.startswith(prefix)]), prefix


@pytest.mark.parametrize("prefix", ["../", "..", "%2e%2e/", "%2E%2e", "images/../", "images/%2e%2e/", "./",
                                    "/secret.bin", "a\\b", "images//", "a\nb", "\u0000"])
def test_a_hostile_prefix_is_refused_before_the_storage_is_asked(store: Store, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        page(store.backend(), prefix)


def test_nothing_outside_the_dataset_is_listed(store: Store) -> None:
    listed = [obj.key for p in walk(store.backend(), "", 1000) for obj in p.objects]
    assert not [key for key in listed if "secret" in key or key.startswith(("ds-other", "../", "/"))]
    assert not [key for key in listed if key.endswith("/")]  # folder markers are not objects


def test_objects_carry_what_the_storage_knows(store: Store) -> None:
    objects = {obj.key: obj for obj in page(store.backend(), "images/").objects}
    cat = objects["images/cat 1.png"]
    assert isinstance(cat, Listed) and cat.size == len(OBJECTS["images/cat 1.png"])
    assert cat.etag and cat.modified is not None and cat.modified > 1_600_000_000
    if store.kind != "s3":  # S3's listing does not tell an object's type
        assert cat.content_type == "image/png"
        assert objects["images/deep/scan.pcd"].content_type == "application/x-pcd"


def test_the_page_size_is_bounded(store: Store) -> None:
    lister = store.backend()
    for limit in (0, -5, 1):
        smallest = page(lister, "many/", None, limit)  # one entry asked of the storage: maybe the folder marker
        assert len(smallest.objects) <= 1 and smallest.next_token is not None
    assert len(page(lister, "many/", None, 10**9).objects) == 25


def _assert_mapped(exc: GatewayError) -> None:
    for leak in (BUCKET, "127.0.0.1", "listing-zq7", "http"):
        assert leak not in exc.detail, exc.detail


def test_a_missing_folder_holds_nothing(servers: Callable[[str], Store], tmp_path: Path) -> None:
    missing = servers("local").backend(path=tmp_path / "no-such-folder")
    assert page(missing) == ListPage([], None)


def test_a_missing_bucket_is_not_found(remote: Store) -> None:
    name = {"azure": "container"}.get(remote.kind, "bucket")
    with pytest.raises(NotFound) as raised:
        page(remote.backend(**{name: "no-such-bucket-zq7"}))
    _assert_mapped(raised.value)


def test_refused_credentials_are_a_bad_gateway(remote: Store) -> None:
    wrong = {"s3": {"secret": "not-the-secret"}, "gcs": {"refused": True},  # Google's token endpoint says no
             "azure": {"key": base64.b64encode(os.urandom(64)).decode()}}[remote.kind]
    with pytest.raises(BadGateway) as raised:
        page(remote.backend(**wrong))
    _assert_mapped(raised.value)


def test_an_unreachable_storage_is_unavailable(remote: Store) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    where = {"s3": "endpoint_url", "gcs": "endpoint", "azure": "endpoint"}[remote.kind]
    endpoint = f"{closed}/devstoreaccount1" if remote.kind == "azure" else closed
    with pytest.raises(Unavailable) as raised:
        page(remote.backend(**{where: endpoint}))
    _assert_mapped(raised.value)
    assert raised.value.retry_after
