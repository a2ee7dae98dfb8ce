"""The security engineer's scenario from the auth issue, end to end over a real socket.

One policy: the vendor's servers read one dataset with signed headers; ml-team employees (Okta)
read another only from the office network; a third dataset is reachable only from inside the VPN
with no login. The gateway sits behind a trusted proxy (127.0.0.1) that sets X-Forwarded-For.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.vendor_signing import sign_request
from tests.auth.support import Idp, SigningKey
from tests.support import RunningGateway

SECRET = "vendor-secret-" + "x" * 32
POLICY = """
version: 1
auth:
  vendors:
    - name: aquarium
      keys: [{{id: aq-2026, secret_env: AQ_SECRET}}]
  oidc:
    - name: okta
      issuer: {issuer}
      audience: api://default
cors:
  allow_origins: [http://vendor.example]
datasets:
  vendor-data:
    backend: {{kind: local, path: {root}}}
    rules: [{{name: vendor-servers, vendors: [aquarium]}}]
  team-data:
    backend: {{kind: local, path: {root}}}
    rules:
      - {{name: ml-team-in-office, groups: [ml-team], issuers: [okta], networks: [10.0.0.0/8]}}
  vpn-only:
    backend: {{kind: local, path: {root}}}
    rules:
      - {{name: vpn, anonymous: true, networks: [10.0.0.0/8]}}
"""


@pytest.fixture
def gateway(tmp_path: Path, idp: Idp, gateway_server: Callable[..., RunningGateway]) -> RunningGateway:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "scan.png").write_bytes(b"\x89PNG-bytes")
    config = tmp_path / "policy.yaml"
    config.write_text(POLICY.format(issuer=idp.issuer, root=root))
    return gateway_server(config=config, trusted_proxies=["127.0.0.1/32"], environ={"AQ_SECRET": SECRET})


def okta_token(idp: Idp, key: SigningKey, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": idp.issuer, "aud": "api://default", "sub": "00u1ada", "email": "ada@acme.example",
            "groups": ["ml-team", "everyone"], "scp": ["openid"], "iat": now, "exp": now + 600, **claims}
    return key.sign(body)


def get(gw: RunningGateway, dataset: str, *, ip: str, headers: dict[str, str] | None = None) -> httpx.Response:
    path = f"/v1/datasets/{dataset}/objects/scan.png"
    return httpx.get(gw.url + path, headers={"X-Forwarded-For": ip, **(headers or {})}, follow_redirects=False)


def vendor_headers(gw: RunningGateway, dataset: str, secret: str = SECRET) -> dict[str, str]:
    return sign_request("GET", f"{gw.url}/v1/datasets/{dataset}/objects/scan.png", key_id="aq-2026", secret=secret)


def test_anonymous_mode_dataset_is_for_in_network_employees_only(
    gateway: RunningGateway, idp: Idp, idp_key: SigningKey
) -> None:
    bearer = {"Authorization": f"Bearer {okta_token(idp, idp_key)}"}
    # The same request: the vendor's servers (outside) are refused; an Okta user from 10.x is let in.
    assert get(gateway, "vpn-only", ip="203.0.113.7", headers=vendor_headers(gateway, "vpn-only")).status_code == 403
    inside = get(gateway, "vpn-only", ip="10.1.2.3", headers=bearer)
    assert inside.status_code == 302
    assert inside.headers["location"].startswith(f"{gateway.url}/v1/local/vpn-only/scan.png?")
    assert get(gateway, "vpn-only", ip="198.51.100.9", headers=bearer).status_code == 403


def test_team_dataset_needs_group_issuer_and_office_network(
    gateway: RunningGateway, idp: Idp, idp_key: SigningKey
) -> None:
    member = {"Authorization": f"Bearer {okta_token(idp, idp_key)}"}
    outsider = {"Authorization": f"Bearer {okta_token(idp, idp_key, groups=['sales'])}"}
    assert get(gateway, "team-data", ip="10.9.9.9", headers=member).status_code == 302
    assert get(gateway, "team-data", ip="203.0.113.7", headers=member).status_code == 403
    assert get(gateway, "team-data", ip="10.9.9.9", headers=outsider).status_code == 403
    # The vendor has a valid credential, but no rule of this dataset admits it: 403, not 401.
    denied = get(gateway, "team-data", ip="10.9.9.9", headers=vendor_headers(gateway, "team-data"))
    assert denied.status_code == 403
    assert denied.json()["error"] == "forbidden"


def test_vendor_reads_its_dataset_and_follows_the_url(gateway: RunningGateway) -> None:
    response = get(gateway, "vendor-data", ip="203.0.113.7", headers=vendor_headers(gateway, "vendor-data"))
    assert response.status_code == 302
    assert httpx.get(response.headers["location"]).content == b"\x89PNG-bytes"
    # Nobody else gets in: no credential at all, where only a credential could help, is 401.
    missing = get(gateway, "vendor-data", ip="10.1.1.1")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"] == "unauthenticated"


def test_every_wrong_credential_is_a_precise_401(gateway: RunningGateway, idp: Idp, idp_key: SigningKey) -> None:
    expired = okta_token(idp, idp_key, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    cases = {
        "garbage bearer": {"Authorization": "Bearer not-a-jwt"},
        "expired token": {"Authorization": f"Bearer {expired}"},
        "wrong audience": {"Authorization": f"Bearer {okta_token(idp, idp_key, aud='api://other')}"},
        "unknown scheme": {"Authorization": "Basic YWRhOnB3"},
        "wrong vendor secret": vendor_headers(gateway, "vendor-data", secret="wrong-secret-" + "y" * 32),
    }
    for name, headers in cases.items():
        response = get(gateway, "vpn-only", ip="10.1.2.3", headers=headers)
        # A bad credential never falls through to anonymous access, even where anonymous is allowed.
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"], name
        body = response.json()
        assert set(body) == {"error", "detail", "request_id"}, name
        assert "not-a-jwt" not in body["detail"] and expired not in body["detail"], name


def test_replayed_vendor_request_is_refused(gateway: RunningGateway) -> None:
    headers = vendor_headers(gateway, "vendor-data")
    assert get(gateway, "vendor-data", ip="203.0.113.7", headers=headers).status_code == 302
    replay = get(gateway, "vendor-data", ip="203.0.113.7", headers=headers)
    assert replay.status_code == 401
    assert "already used" in replay.json()["detail"]


def test_spoofed_forwarded_for_from_untrusted_peer_changes_nothing(
    tmp_path: Path, gateway_server: Callable[..., RunningGateway]
) -> None:
    root = tmp_path / "objects"
    root.mkdir()
    (root / "a.bin").write_bytes(b"1")
    config = tmp_path / "policy.yaml"
    config.write_text(
        f"version: 1\ndatasets:\n  vpn:\n    backend: {{kind: local, path: {root}}}\n"
        "    rules: [{name: vpn, anonymous: true, networks: [10.0.0.0/8]}]\n"
    )
    # No trusted proxies: the socket peer (127.0.0.1) is the client, whatever the headers say.
    gw = gateway_server(config=config)
    for header in ({"X-Forwarded-For": "10.0.0.1"}, {"Forwarded": "for=10.0.0.1"}, {"X-Real-IP": "10.0.0.1"}):
        response = httpx.get(f"{gw.url}/v1/datasets/vpn/objects/a.bin", headers=header)
        assert response.status_code == 401, header  # no credential, and not from the VPN


def test_audit_records_the_principal_but_never_the_token(
    gateway: RunningGateway, idp: Idp, idp_key: SigningKey, capfd: pytest.CaptureFixture[str]
) -> None:
    token = okta_token(idp, idp_key)
    headers = vendor_headers(gateway, "vendor-data")
    assert get(gateway, "team-data", ip="10.1.2.3", headers={"Authorization": f"Bearer {token}"}).status_code == 302
    assert get(gateway, "vendor-data", ip="203.0.113.7", headers=headers).status_code == 302
    deadline = time.monotonic() + 5
    out = ""
    while time.monotonic() < deadline and out.count('"action"') < 2:
        time.sleep(0.05)
        out += capfd.readouterr().out
    assert '"subject":"00u1ada"' in out and '"email":"ada@acme.example"' in out
    assert '"method":"oidc"' in out and '"issuer":"okta"' in out
    assert '"key_id":"aq-2026"' in out and '"method":"vendor_hmac"' in out
    assert token not in out and token.split(".")[2] not in out
    assert headers["X-Gateway-Signature"] not in out
    assert "sig=" not in out


# -- two credentials, and a key the gateway cannot tell about yet ---------------------------------------

@pytest.mark.parametrize("second", ["Bearer not.a.token", "Bearer {valid}", "Basic dXNlcjpwYXNz"])
def test_two_credentials_in_one_request_are_refused_never_chosen_between(
    gateway: RunningGateway, idp: Idp, idp_key: SigningKey, second: str
) -> None:
    """Valid vendor signature headers plus any Authorization header: 401 ambiguous_credentials. Before,
    the vendor's headers won and a bad bearer token in the same request was ignored (a 302)."""
    assert get(gateway, "vendor-data", ip="203.0.113.9", headers=vendor_headers(gateway, "vendor-data")).status_code \
        == 302
    headers = {**vendor_headers(gateway, "vendor-data"), "Authorization": second.format(valid=okta_token(idp, idp_key))}
    response = get(gateway, "vendor-data", ip="203.0.113.9", headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "ambiguous_credentials"
    assert "WWW-Authenticate" in response.headers


def test_a_key_id_the_issuer_does_not_publish_is_401_not_503(
    gateway: RunningGateway, idp: Idp, idp_key: SigningKey
) -> None:
    bearer = {"Authorization": f"Bearer {okta_token(idp, idp_key)}"}
    assert get(gateway, "team-data", ip="10.1.2.3", headers=bearer).status_code == 302  # keys fetched now
    stranger = SigningKey("k-unknown", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    response = get(gateway, "team-data", ip="10.1.2.3",
                   headers={"Authorization": f"Bearer {okta_token(idp, stranger)}"})
    # The issuer answered moments ago without this key: the token's fault (401), not the gateway's
    # (503), so strangers' made-up kids never move the 5xx rate (docs/okta.md, "Key rotation").
    assert response.status_code == 401, response.text
    assert response.json()["detail"] == "the token is signed with a key the issuer 'okta' does not publish"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
