"""A fake Microsoft Entra token endpoint, as azure-identity's ManagedIdentityCredential reaches it on App
Service (``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``): Entra cannot run here, so this stands in for
it on a real socket, and the credential's own code asks it for tokens.

Its tokens are JWT-shaped (unsigned) with the claims Azurite's ``--oauth basic`` reads: an Entra
issuer, the storage audience, ``oid``/``tid`` (the user delegation key's ``skoid``/``sktid``) and a
lifetime. ``mode`` switches it to refusing (400), or to tokens with a foreign issuer that Azurite refuses.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OID = "6f1c2d3e-0000-4000-8000-00000000a11c"
TID = "72f988bf-0000-4000-8000-0000000e17a0"
HEADER = "gateway-test-identity-header"


def _part(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def token(*, issuer: str = f"https://sts.windows.net/{TID}/", life: int = 3600) -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": "https://storage.azure.com", "oid": OID, "tid": TID, "iat": now - 60,
              "nbf": now - 60, "exp": now + life}
    return f"{_part({'alg': 'RS256', 'typ': 'JWT'})}.{_part(claims)}.c2lnbmF0dXJl"


class TokenEndpoint:
    """Counts the tokens it hands out (``grants``) and the requests it refused (``refused``)."""

    def __init__(self) -> None:
        self.grants = 0
        self.refused = 0
        self.mode = "ok"  # "ok", "fail" (HTTP 400), "foreign" (a token from an issuer Azurite refuses)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                query = parse_qs(urlsplit(self.path).query)
                if self.headers.get("X-IDENTITY-HEADER") != HEADER or owner.mode == "fail":
                    owner.refused += 1
                    self._answer(400, {"error": "invalid_request", "error_description": "no such identity"})
                    return
                owner.grants += 1
                issuer = "https://login.example.test/" if owner.mode == "foreign" else f"https://sts.windows.net/{TID}/"
                self._answer(200, {"access_token": token(issuer=issuer), "expires_on": str(int(time.time()) + 3600),
                                   "resource": query.get("resource", [""])[0], "token_type": "Bearer"})

            def _answer(self, status: int, body: dict[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/msi/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def environ(self) -> dict[str, str]:
        """What App Service sets for its managed identity endpoint."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": HEADER}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
