"""Sealed cookies: AES-256-GCM (``cryptography``) under a ring of keys, each value bound to its name.

A sealed value is ``base64url(version | key id | nonce | ciphertext and tag)``. The cookie's name,
the version and the key id are the additional authenticated data, so a value moved to another
cookie (a login transaction presented as a session, say) or re-labelled with another key id does
not open. The first key seals; every key opens, so keys rotate by putting the new one first and
dropping the old one once the longest session has ended (docs/browser-sign-in.md).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x01"
KID_BYTES = 4
NONCE_BYTES = 12
MAX_SEALED_CHARS = 4096  # browsers keep about 4 KB per cookie; anything longer was never ours


class SealReason(StrEnum):
    """Why a sealed value did not open: a fixed set, safe for audit records and metric labels."""

    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    TAMPERED = "tampered"


class SealError(Exception):
    def __init__(self, reason: SealReason) -> None:
        super().__init__(str(reason))
        self.reason = reason


def _derive(secret: bytes, purpose: bytes, length: int) -> bytes:
    # HKDF separates the encryption key from the public key id: the id reveals nothing of the key.
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=b"gateway " + purpose).derive(secret)


class SessionKeys:
    """The key ring of GATEWAY_SESSION_KEYS. Never printed: its repr names the key ids only."""

    def __init__(self, secrets: Sequence[bytes]) -> None:
        if not secrets:
            raise ValueError("at least one session key is needed")
        ring = [(_derive(s, b"cookie key id v1", KID_BYTES), AESGCM(_derive(s, b"cookie aes-256-gcm v1", 32)))
                for s in secrets]
        self._sealer = ring[0]
        self._openers = dict(reversed(ring))  # a repeated key: the first occurrence wins

    def __repr__(self) -> str:
        return f"SessionKeys({', '.join(kid.hex() for kid in self._openers)})"

    @staticmethod
    def _aad(name: str, kid: bytes) -> bytes:
        return b"gateway cookie\x00" + name.encode("utf-8") + b"\x00" + VERSION + kid

    def seal(self, name: str, plaintext: bytes) -> str:
        kid, aead = self._sealer
        nonce = os.urandom(NONCE_BYTES)  # 96 random bits per value, as AES-GCM requires
        sealed = VERSION + kid + nonce + aead.encrypt(nonce, plaintext, self._aad(name, kid))
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, name: str, value: str) -> bytes:
        """The plaintext sealed under ``name``; SealError with the reason otherwise."""
        if not value or len(value) > MAX_SEALED_CHARS or not value.isascii():
            raise SealError(SealReason.MALFORMED)
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise SealError(SealReason.MALFORMED) from None
        header = 1 + KID_BYTES + NONCE_BYTES
        if len(raw) < header + 16 or raw[:1] != VERSION:
            raise SealError(SealReason.MALFORMED)
        kid, nonce = raw[1:1 + KID_BYTES], raw[1 + KID_BYTES:header]
        aead = self._openers.get(kid)
        if aead is None:
            raise SealError(SealReason.UNKNOWN_KEY)  # retired, or from another environment
        try:
            return aead.decrypt(nonce, raw[header:], self._aad(name, kid))
        except InvalidTag:
            raise SealError(SealReason.TAMPERED) from None


def cookie_values(header: str, name: str) -> list[str]:
    """Every value the ``Cookie`` header gives for exactly ``name`` (RFC 6265 section 5.4 syntax).
    Names are compared exactly: ``gateway_session`` is not ``__Host-gateway_session``."""
    values = []
    for pair in header.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key == name:
            values.append(_unquote(value.strip()))
    return values


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def cookies_with_prefix(header: str, prefix: str) -> dict[str, str]:
    """The cookies whose names start with ``prefix``, by name (the last of repeated names)."""
    found: dict[str, str] = {}
    for pair in header.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key.startswith(prefix):
            found[key] = _unquote(value.strip())
    return found


def set_cookie(name: str, value: str, *, max_age: int, same_site: str) -> str:
    """A ``Set-Cookie`` value with the attributes a ``__Host-`` cookie must have: Secure, Path=/,
    no Domain; and HttpOnly, since no script of any page ever needs to read it."""
    return f"{name}={value}; Path=/; Max-Age={max(0, max_age)}; Secure; HttpOnly; SameSite={same_site}"


def clear_cookie(name: str, *, same_site: str) -> str:
    """Deletes the cookie: the same name and attributes, an empty value, Max-Age=0."""
    return set_cookie(name, "", max_age=0, same_site=same_site)
