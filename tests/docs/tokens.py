"""What the docs' commands take from the reader's environment, made for the sandbox: ``$JWT`` is an
employee's Okta access token as the README's examples describe (issuer ``acme.okta.com``, group
``ml-team``), signed with a key made here (``gateway explain`` reads claims without verifying)."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

OKTA_ISSUER = "https://acme.okta.com/oauth2/default"


def employee_token(groups: tuple[str, ...] = ("ml-team",)) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": OKTA_ISSUER, "aud": "api://default", "sub": "00u1employee", "email": "ada@acme.example",
              "groups": list(groups), "iat": now, "exp": now + 3600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "docs"})


def sandbox_env(root: Path) -> dict[str, str]:
    return {"JWT": employee_token()}
