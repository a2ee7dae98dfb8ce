"""A real identity provider (discovery and JWKS on a local socket) with one RSA signing key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.auth.support import Idp, SigningKey, running_idp


@pytest.fixture
def idp_key() -> SigningKey:
    return SigningKey("k1", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture
def idp(idp_key: SigningKey) -> Iterator[Idp]:
    with running_idp() as server:
        server.keys = [idp_key.jwk()]
        yield server
