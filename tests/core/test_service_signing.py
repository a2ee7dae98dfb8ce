"""Signing through the service layer, with a Runtime built like production and a clock we set."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from gateway.app.runtime import Runtime
from gateway.backends import FileSource
from gateway.errors import Forbidden, InvalidKey, PayloadTooLarge, Unauthenticated, UnknownDataset
from gateway.models import SignedUrl
from tests.calls import Caller
from tests.core.conftest import PUBLIC_URL, Clock, local_policy

LOOPBACK = "127.0.0.1"
OUTSIDE = "198.51.100.7"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a b+c.png").write_bytes(b"png")
    (root / "images" / "0.png").write_bytes(b"zero")
    return root


@pytest.fixture
def local_runtime(make_runtime: Callable[..., Runtime], write_policy: Callable[..., Path], data_dir: Path,
                  tmp_path: Path, clock: Clock) -> Callable[..., Runtime]:
    """Factory: ``local_runtime(url_ttl="120s", min_remaining=0.5, ...)`` with the shared clock."""

    def make(*, employee: bool = False, **policy: object) -> Runtime:
        """``employee=True``: every caller without a credential is a signed-in employee (development
        mode), so that the policy sees a caller with a credential."""
        text = local_policy(data_dir, tmp_path / "audit.jsonl", **policy)  # type: ignore[arg-type]
        extra: dict[str, object] = {"dev_mode": True, "dev_principal": "ml@acme.example"} if employee else {}
        return make_runtime(write_policy(text, name=f"policy-{len(text)}-{id(policy)}.yaml"), clock=clock, **extra)

    return make


def sign(runtime: Runtime, key: str, client_ip: str = LOOPBACK) -> SignedUrl:
    return Caller(runtime, client_ip=client_ip).redirect(key)


def max_age(runtime: Runtime, url: SignedUrl) -> int:
    return runtime.signer.max_age(runtime.holder.current.policy.datasets["local"], url)


# -- time buckets -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ttl", "share"), [
    (120, 0.5),
    (300, 0.75),
    (60, 0.1),
    (11, 0.5),
    (20, 0.95),
])
def test_every_url_keeps_its_minimum_life_through_whole_buckets(
    local_runtime: Callable[..., Runtime], clock: Clock, ttl: int, share: float
) -> None:
    """Scan the clock through several URL lifetimes: invariant 7 and the Cache-Control bound hold at every step."""
    runtime = local_runtime(url_ttl=f"{ttl}s", min_remaining=share)
    start = clock.now = 1_700_000_000.0
    step = min(0.25, ttl / 240)
    handed_out: list[tuple[float, str]] = []

    async def scan() -> None:
        while clock.now < start + 3 * ttl:
            url, answered_max_age = await Caller(runtime).aredirect("images/0.png")
            remaining = url.expires_at - clock.now
            assert remaining >= ttl * share, (clock.now, url.expires_at)
            assert url.expires_at - url.signed_at <= ttl
            assert answered_max_age == max_age(runtime, url)
            assert 0 <= answered_max_age < remaining
            handed_out.append((clock.now, url.url))
            clock.now += step

    asyncio.run(scan())
    # Within a bucket the URL is stable; a URL never comes back once it was replaced.
    changes = [handed_out[i][1] for i in range(len(handed_out)) if i == 0 or handed_out[i][1] != handed_out[i - 1][1]]
    assert len(changes) == len(set(changes)), "a URL came back after it had been replaced"
    assert len(changes) >= 3  # over three lifetimes the URL must rotate
    assert len(changes) <= len(handed_out) // 2, "URLs change at almost every call: no stable buckets"


def test_same_bucket_same_url_and_next_bucket_a_new_one(local_runtime: Callable[..., Runtime], clock: Clock) -> None:
    runtime = local_runtime(url_ttl="120s", min_remaining=0.5)
    first = sign(runtime, "images/0.png")
    clock.now += 0.5
    assert sign(runtime, "images/0.png") == first
    clock.now += 120  # a full lifetime later, the first URL cannot have enough life left
    later = sign(runtime, "images/0.png")
    assert later.url != first.url
    assert later.expires_at > first.expires_at


def test_replicas_hand_out_the_same_url_without_sharing_a_cache(
    local_runtime: Callable[..., Runtime], clock: Clock
) -> None:
    one, two = local_runtime(), local_runtime()
    assert one.signer.cache is not two.signer.cache
    for offset in (0.0, 7.3, 33.3, 95.0, 250.5):
        clock.now = 1_700_000_000.0 + offset
        assert sign(one, "images/0.png") == sign(two, "images/0.png")


def test_max_age_is_less_than_the_remaining_life(local_runtime: Callable[..., Runtime], clock: Clock) -> None:
    runtime = local_runtime(url_ttl="120s")
    url = sign(runtime, "images/0.png")
    for delta in (0.0, 1.0, 30.0, 59.0, 60.0, 119.0, 119.9, 120.0, 500.0):
        clock.now = url.signed_at + delta
        seconds = max_age(runtime, url)
        assert seconds >= 0
        assert seconds < max(url.expires_at - clock.now, 1), delta


# -- the signed key is the authorized key ---------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "key"), [
    ("images/a%20b%2Bc.png", "images/a b+c.png"),
    ("images%2F0.png", "images/0.png"),
])
def test_the_signed_key_is_the_authorized_key(
    local_runtime: Callable[..., Runtime], clock: Clock, data_dir: Path, raw: str, key: str
) -> None:
    runtime = local_runtime()
    url = sign(runtime, raw)
    parts = urlsplit(url.url)
    assert url.url.startswith(PUBLIC_URL + "/v1/local/local/")
    assert unquote(parts.path.removeprefix("/v1/local/local/")) == key
    query = parse_qs(parts.query)
    assert query["exp"] == [str(int(url.expires_at))]
    backend = runtime.holder.current.backends["local"]
    assert isinstance(backend, FileSource)
    assert backend.verify(key, exp=query["exp"][0], sig=query["sig"][0], now=clock.now) == int(url.expires_at)
    assert backend.path(key) == (data_dir / key).resolve()
    with pytest.raises(Forbidden):
        backend.verify(key + ".other", exp=query["exp"][0], sig=query["sig"][0], now=clock.now)


def test_sign_rejects_bad_keys_and_denies_outsiders(local_runtime: Callable[..., Runtime]) -> None:
    runtime = local_runtime()
    with pytest.raises(InvalidKey):
        sign(runtime, "images/%2e%2e/secret")
    with pytest.raises(Unauthenticated) as outsider:
        sign(runtime, "images/0.png", OUTSIDE)
    # A caller with a credential learns that a dataset does not exist.
    with pytest.raises(UnknownDataset):
        Caller(local_runtime(employee=True)).redirect("a.png", "nope")
    # A caller without one hears exactly what it hears for a dataset it may not read: strangers
    # cannot list the datasets by name.
    with pytest.raises(Unauthenticated) as stranger:
        Caller(runtime, client_ip=OUTSIDE).redirect("a.png", "nope")
    assert (stranger.value.status, stranger.value.code, stranger.value.detail) == (
        outsider.value.status, outsider.value.code, outsider.value.detail)


# -- batches ------------------------------------------------------------------------------------------------

def sign_batch(runtime: Runtime, keys: list[object], client_ip: str = LOOPBACK) -> list:  # type: ignore[type-arg]
    return Caller(runtime, client_ip=client_ip).batch(keys)


def audited(runtime: Runtime, tmp_path: Path) -> list[tuple[str, str, str | None, int]]:
    runtime.audit.close()
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    return [(r["action"], r["decision"], r.get("reason"), r["status"]) for r in records]


def test_batch_over_the_limit_is_refused_and_audited(local_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    runtime = local_runtime(batch_limit=3)
    assert len(sign_batch(runtime, ["a", "b", "c"])) == 3
    with pytest.raises(PayloadTooLarge) as info:
        sign_batch(runtime, ["a", "b", "c", "d"])
    assert info.value.status == 413
    assert audited(runtime, tmp_path)[-1] == ("sign_batch", "deny", "bad_request", 413)


def test_one_bad_key_never_fails_the_batch_and_order_is_kept(local_runtime: Callable[..., Runtime]) -> None:
    runtime = local_runtime(allow_keys='["images/**"]')
    keys: list[object] = ["images/z.png", "../etc/passwd", 42, "images/0.png", "labels/x.json", "a\nb",
                          "images/a b+c.png", None]
    results = sign_batch(runtime, keys)
    assert len(results) == len(keys)
    assert [item.key for item in results[:2]] == ["images/z.png", "../etc/passwd"]
    assert results[2].key is None and results[2].detail == "key 2 is a number, not a string"
    assert results[7].key is None and results[7].detail == "key 7 is null, not a string"
    kinds = ["url" if item.url else item.error for item in results]
    assert kinds == ["url", "invalid_key", "invalid_key", "url", "forbidden", "invalid_key", "url", "invalid_key"]
    single = sign(runtime, "images/a b+c.png")
    assert results[6].url == single
    assert all(item.detail for item in results if item.error)


def test_a_batch_from_outside_is_refused_whole(local_runtime: Callable[..., Runtime]) -> None:
    # No rule admits the caller at all (the rules do not depend on the key): one refusal, not N errors
    # (401 for a caller without a credential, 403 for one with a credential no rule admits).
    with pytest.raises(Unauthenticated) as info:
        sign_batch(local_runtime(), ["images/0.png", "images/1.png"], OUTSIDE)
    assert info.value.status == 401
    with pytest.raises(Forbidden) as denied:
        sign_batch(local_runtime(employee=True), ["images/0.png", "images/1.png"], OUTSIDE)
    assert denied.value.status == 403


def test_a_batch_larger_than_the_rate_limit_is_413_not_a_retry_forever(
    make_runtime: Callable[..., Runtime], write_policy: Callable[..., Path], data_dir: Path, tmp_path: Path,
) -> None:
    text = local_policy(data_dir, tmp_path / "audit.jsonl").replace(
        "url_ttl: 120s", "url_ttl: 120s\n            rate_limit: {requests: 2, per: 1m}")
    runtime = make_runtime(write_policy(text, name="limited.yaml"))
    assert len(sign_batch(runtime, ["a", "b"])) == 2
    # Three keys can never fit in a bucket of two: a Retry-After would promise a retry that fails forever.
    with pytest.raises(PayloadTooLarge) as info:
        sign_batch(runtime, ["a", "b", "c"])
    assert info.value.retry_after is None and "split it" in info.value.detail
    assert audited(runtime, tmp_path)[-1] == ("sign_batch", "deny", "rate_limited", 413)


def test_an_unknown_dataset_is_a_recorded_decision(local_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    runtime, anonymous = local_runtime(employee=True), local_runtime()
    with pytest.raises(UnknownDataset):
        Caller(runtime).redirect("a.png", "no-such-dataset")
    with pytest.raises(Unauthenticated):
        Caller(anonymous).redirect("a.png", "no-such-dataset")
    runtime.audit.close()
    anonymous.audit.close()
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    # The audit record keeps the real reason, whatever the caller was told.
    assert [(r["dataset"], r["decision"], r["reason"], r["status"]) for r in records] == [
        ("no-such-dataset", "deny", "unknown_dataset", 404), ("no-such-dataset", "deny", "unknown_dataset", 401)]
