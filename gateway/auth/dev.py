"""Development mode: every request is one fixed principal. For trying policies on a laptop only."""

from __future__ import annotations

from gateway.auth import AuthRequest
from gateway.models import AuthMethod, Principal


class DevAuthenticator:
    """Answers every request that carries no credential with a fixed principal.

    The composition root refuses it unless ``GATEWAY_DEV_MODE=true`` and the gateway listens on
    loopback only: on any other address it would hand that identity to the network.
    """

    def __init__(self, email: str, groups: frozenset[str] = frozenset()) -> None:
        self.principal = Principal(AuthMethod.DEVELOPMENT, subject=email, email=email, issuer="development",
                                   groups=groups)

    reads_authorization = False

    def carries(self, request: AuthRequest) -> bool:
        return False  # it is the chain's fallback for requests that carry no credential

    async def authenticate(self, request: AuthRequest) -> Principal | None:
        if "authorization" in request.headers or "x-gateway-signature" in request.headers:
            return None  # a real credential is checked by the real authenticators
        return self.principal
