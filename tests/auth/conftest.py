"""Fixtures for the auth tests: real keys, a real identity provider on a local socket, clocks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .support import NOW, FakeClock, Idp, SigningKey, running_idp


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def wall() -> FakeClock:
    """Wall-clock time (token exp, nbf, iat; vendor timestamps)."""
    return FakeClock(NOW)


@pytest.fixture
def mono() -> FakeClock:
    """Monotonic time (JWKS cache TTL and refetch interval)."""
    return FakeClock(1000.0)


@pytest.fixture(scope="session")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


@pytest.fixture
def keys(rsa_keys: list[rsa.RSAPrivateKey]) -> dict[str, SigningKey]:
    """k1, k2, k3 (RSA, RS256) and e1 (EC P-256, ES256)."""
    made = {f"k{i + 1}": SigningKey(f"k{i + 1}", "RS256", key) for i, key in enumerate(rsa_keys)}
    made["e1"] = SigningKey("e1", "ES256", ec.generate_private_key(ec.SECP256R1()))
    return made


@pytest.fixture
def idp() -> Iterator[Idp]:
    with running_idp() as state:
        yield state
