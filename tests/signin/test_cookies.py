"""Sealed cookies and the session key ring: what opens, what never does, and why."""

from __future__ import annotations

import base64
import os

import orjson
import pytest

from gateway.auth.cookies import SealError, SealReason, SessionKeys, cookie_values, cookies_with_prefix
from gateway.auth.login_tx import Transaction
from gateway.auth.sessions import COOKIE, MAX_COOKIE_BYTES, CookieSessionStore, Session, SessionInvalid, SessionReason
from gateway.errors import SignInFailed

NOW = 1_800_000_000
pytestmark = pytest.mark.anyio


def keys(*secrets: bytes) -> SessionKeys:
    return SessionKeys(list(secrets))


def session(**overrides: object) -> Session:
    values: dict[str, object] = {"sid": "s" * 43, "issuer": "corp", "subject": "ada", "email": "ada@acme.test",
                                 "groups": ("ml-team",), "created": NOW, "expires": NOW + 3600, "seen": NOW}
    values.update(overrides)
    return Session(**values)  # type: ignore[arg-type]


def flip(value: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_a_sealed_value_opens_under_its_name_only() -> None:
    ring = keys(os.urandom(32))
    sealed = ring.seal(COOKIE, b"secret payload")
    assert ring.open(COOKIE, sealed) == b"secret payload"
    assert b"secret" not in base64.urlsafe_b64decode(sealed + "==")  # encrypted, not just signed
    # The name is authenticated: a value moved to another cookie does not open there.
    with pytest.raises(SealError) as info:
        ring.open("__Host-gateway_tx_00000000", sealed)
    assert info.value.reason is SealReason.TAMPERED


@pytest.mark.parametrize("index", [0, 1, 4, 5, 16, 17, 30, -1])
def test_every_flipped_bit_is_refused(index: int) -> None:
    ring = keys(os.urandom(32))
    sealed = ring.seal(COOKIE, b"{}")
    with pytest.raises(SealError) as info:
        ring.open(COOKIE, flip(sealed, index))
    # Version and key id bytes are malformed/unknown; everything after them fails the tag.
    assert info.value.reason in {SealReason.MALFORMED, SealReason.UNKNOWN_KEY, SealReason.TAMPERED}


@pytest.mark.parametrize("junk", ["", "!!!!", "a", "AQ", "x" * 5000, "Zm9v", "é" * 40, "AQID" * 3,
                                  "AQ==" + "A" * 60])
def test_junk_and_truncated_values_are_malformed_or_tampered(junk: str) -> None:
    ring = keys(os.urandom(32))
    with pytest.raises(SealError):
        ring.open(COOKIE, junk)
    sealed = ring.seal(COOKIE, b"payload")
    for cut in (len(sealed) - 1, len(sealed) // 2, 20, 5):
        with pytest.raises(SealError):
            ring.open(COOKIE, sealed[:cut])


def test_rotation_new_key_seals_old_key_still_opens_retired_key_does_not() -> None:
    old, new = os.urandom(32), os.urandom(32)
    before = keys(old).seal(COOKIE, b"made before the rotation")
    rotated = keys(new, old)
    assert rotated.open(COOKIE, before) == b"made before the rotation"
    after = rotated.seal(COOKIE, b"made after")
    assert keys(new).open(COOKIE, after) == b"made after"  # sealed with the first key
    with pytest.raises(SealError) as info:
        keys(new).open(COOKIE, before)  # the old key retired
    assert info.value.reason is SealReason.UNKNOWN_KEY
    with pytest.raises(SealError) as info:
        keys(os.urandom(32)).open(COOKIE, after)  # a key from another environment
    assert info.value.reason is SealReason.UNKNOWN_KEY


def test_the_key_ring_never_shows_its_keys() -> None:
    secret = os.urandom(32)
    text = repr(keys(secret))
    assert secret.hex() not in text and base64.b64encode(secret).decode() not in text


def test_cookie_names_are_matched_exactly() -> None:
    header = "gateway_session=planted; x__Host-gateway_session=no; __Host-gateway_session=yes; other=1"
    assert cookie_values(header, COOKIE) == ["yes"]
    assert cookie_values("gateway_session=planted", COOKIE) == []
    assert cookie_values(f"{COOKIE}=a; {COOKIE}=b", COOKIE) == ["a", "b"]
    assert cookies_with_prefix("__Host-gateway_tx_1=a; __Host-gateway_tx_2=b; x=c", "__Host-gateway_tx_") == {
        "__Host-gateway_tx_1": "a", "__Host-gateway_tx_2": "b"}


async def test_the_session_cookie_is_small_holds_no_tokens_and_never_splits() -> None:
    store = CookieSessionStore(keys(os.urandom(32)))
    value = await store.issue(session(groups=tuple(f"group-{i}" for i in range(30))))
    assert len(COOKIE) + 1 + len(value) < MAX_COOKIE_BYTES
    with pytest.raises(Exception, match="groups"):
        await store.issue(session(groups=tuple(f"a-rather-long-group-name-{i:04d}" for i in range(100))))
    plaintext = orjson.loads(store.keys.open(COOKIE, value))
    assert set(plaintext) == {"s", "i", "u", "e", "g", "c", "x", "l"}  # identifiers and times; no token


async def test_a_login_transaction_cannot_be_used_as_a_session() -> None:
    ring = keys(os.urandom(32))
    tx = Transaction.start("corp", "https://app.example/", NOW)
    sealed = tx.seal(ring)
    assert Transaction.open(ring, tx.cookie, sealed) == tx
    store = CookieSessionStore(ring)
    with pytest.raises(SessionInvalid) as info:
        await store.load(sealed)
    assert info.value.reason is SessionReason.TAMPERED
    with pytest.raises(SignInFailed):
        Transaction.open(ring, "__Host-gateway_tx_ffffffff", sealed)  # another transaction's name
    session_value = await store.issue(session())
    with pytest.raises(SignInFailed):
        Transaction.open(ring, tx.cookie, session_value)


async def test_revocation_in_this_process() -> None:
    store = CookieSessionStore(keys(os.urandom(32)))
    live = session()
    value = await store.issue(live)
    assert (await store.load(value)).sid == live.sid
    await store.revoke(live)
    with pytest.raises(SessionInvalid) as info:
        await store.load(value)
    assert info.value.reason is SessionReason.REVOKED
