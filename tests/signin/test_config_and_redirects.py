"""Browser sign-in's configuration and startup checks, and where sign-in may send a browser back to."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError

from gateway.auth.login_tx import safe_return_to
from gateway.config import parse_policy
from gateway.errors import ConfigError
from gateway.settings import Settings
from tests.signin.support import CLIENT_SECRET, SECRET_ENV, gateway_app, session_key, write_policy
from tests.support import gateway_server

__all__ = ["gateway_server"]

ALLOWED = {"https://app.vendor.example", "https://gw.acme.example"}
PAGE = "https://gw.acme.example/v1/auth/"


@pytest.mark.parametrize("target", [
    "//evil.test", "///evil.test", "/\\evil.test", "\\\\evil.test", "/%09/evil.test", "/%2f%2fevil.test",
    "/\t/evil.test", "/v1/auth/", "https://app.vendor.example.evil.test/", "https://app.vendor.example@evil.test/",
    "https://user:pw@app.vendor.example/", "https://evil.test#@app.vendor.example", "https://evil.test?@app.vendor.example",
    "https:evil.test", "https:/evil.test", "https:app.vendor.example", "javascript:alert(1)",
    "JavaScript:alert(1)", "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)",
    "https://app.vendor.example/\r\nSet-Cookie: x=y",
    "https://app.vendor.example\r\n.evil.test/", "https://xn--pp-vendor-7ub.example/", "https://аpp.vendor.example/",
    "https://app.vendor.example./", "https://app.vendor.example:8443/", "http://app.vendor.example/",
    "https://app.vendor.example/" + "a" * 3000, "https://app.vendor.example\\@evil.test/",
    " https://app.vendor.example/", "https://app.vendor.example/ x", "ftp://app.vendor.example/",
    "https://[::1]/", "https://127.0.0.1/", "", "https://", "https:///app.vendor.example/",
])
def test_open_redirect_payloads_go_to_the_gateways_page(target: str) -> None:
    assert safe_return_to(target, ALLOWED, PAGE) == PAGE


@pytest.mark.parametrize(("target", "expected"), [
    ("https://app.vendor.example", "https://app.vendor.example/"),
    ("https://app.vendor.example/labels?task=7#item-3", "https://app.vendor.example/labels?task=7#item-3"),
    ("HTTPS://APP.Vendor.Example/Labels", "https://app.vendor.example/Labels"),  # one origin, however written
    ("https://app.vendor.example:443/x", "https://app.vendor.example/x"),
    # Percent-encoded CR LF stays encoded in Location: a path, never a header.
    ("https://app.vendor.example/%0d%0aSet-Cookie:x=y", "https://app.vendor.example/%0d%0aSet-Cookie:x=y"),
    ("https://gw.acme.example/v1/datasets/ml/objects/a%20b.png?x=1", "https://gw.acme.example/v1/datasets/ml/objects/a%20b.png?x=1"),
])
def test_allowed_origins_are_followed_exactly(target: str, expected: str) -> None:
    assert safe_return_to(target, ALLOWED, PAGE) == expected


def policy_with(browser: dict[str, Any]) -> str:
    return yaml.safe_dump({"version": 1, "auth": {"oidc": [{
        "name": "okta", "issuer": "https://acme.okta.com", "audience": "api://default",
        "browser": {"client_id": "0oa1", "client_secret_env": "OKTA_SECRET", **browser}}]},
        "datasets": {"d": {"backend": {"kind": "local", "path": "."}, "rules": [{"name": "r", "issuers": ["okta"]}]}}})


@pytest.mark.parametrize(("browser", "problem"), [
    ({"session_ttl": "25h"}, "session_ttl"),
    ({"session_ttl": "1h", "idle_ttl": "2h"}, "idle_ttl cannot be longer"),
    ({"scopes": ["email"]}, "must include openid"),
    ({"scopes": ["openid", "a b"]}, "without spaces"),
    ({"embedders": ["https://app.vendor.example/path"]}, "not an origin"),
    ({"embedders": ["app.vendor.example"]}, "not an origin"),
    ({"return_origins": ["https://*.vendor.example"]}, "not an origin"),
    ({"client_secret_file": "/run/secret"}, "exactly one of client_secret_env or client_secret_file"),
    ({"client_id": ""}, "client_id"),
    ({"cookie_name": "x"}, "cookie_name"),  # unknown keys are errors
])
def test_bad_browser_config_is_refused_with_its_location(browser: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(policy_with(browser), "policy.yaml")
    assert any(problem in p and "auth.oidc.0.browser" in p for p in info.value.problems), info.value.problems


def test_a_good_browser_config_is_normalized() -> None:
    policy = parse_policy(policy_with({"embedders": ["https://App.Vendor.example/"], "return_origins": []}))
    browser = policy.auth.oidc[0].browser
    assert browser is not None and browser.embedders == ["https://app.vendor.example"]
    assert browser.session_ttl == 8 * 3600 and browser.idle_ttl == 3600


@pytest.mark.parametrize("keys", [
    "a" * 44, "c2hvcnQ=", "not base64 at all, with spaces", base64.b64encode(b"\x00" * 32).decode(),
    session_key() + ",tooshort",
], ids=["44-a", "too-short", "not-base64", "zeros", "second-too-short"])
def test_session_keys_need_32_random_bytes_each(keys: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(session_keys=keys)
    assert keys.split(",")[-1] not in str(info.value) or not keys.split(",")[-1]  # never quoted back


def test_session_keys_accept_base64_and_base64url_and_rotate() -> None:
    standard = base64.b64encode(os.urandom(32)).decode()
    urlsafe = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    settings = Settings(session_keys=f"{standard}, {urlsafe}")
    assert [len(k) for k in settings.session_key_bytes()] == [32, 48]
    assert standard not in repr(settings)


def test_browser_sign_in_without_keys_or_public_url_or_secret_refuses_to_start(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml", tmp_path, "https://acme.okta.com")
    from gateway.app import create_app

    with pytest.raises(ConfigError) as info:
        create_app(Settings(config=policy, signing_key="s" * 32), environ={})
    problems = "\n".join(info.value.problems)
    assert "GATEWAY_SESSION_KEYS" in problems and "sessions must survive restarts" in problems
    assert "GATEWAY_PUBLIC_URL" in problems
    assert f"environment variable {SECRET_ENV} is not set" in problems
    with pytest.raises(ConfigError) as info:
        create_app(Settings(config=policy, signing_key="s" * 32, session_keys=session_key(),
                            public_url="http://gw.acme.example"), environ={SECRET_ENV: CLIENT_SECRET})
    assert any("https://" in p for p in info.value.problems)  # plain http only on loopback
    app = gateway_app(8999, policy, keys=[session_key()])  # all set: it starts
    assert app.runtime.holder.current.browsers["corp"].redirect_uri == "http://127.0.0.1:8999/v1/auth/callback"


def test_without_browser_sign_in_the_routes_are_404_and_answers_do_not_vary_on_cookies(
        tmp_path: Path, gateway_server: Any) -> None:
    (tmp_path / "a.txt").write_text("a")
    gw = gateway_server(local_dir=tmp_path)
    assert httpx.get(gw.url + "/v1/auth/login").status_code == 404
    assert httpx.get(gw.url + "/v1/auth/session").status_code == 404
    response = httpx.get(gw.url + "/v1/datasets/local/objects/a.txt", headers={"Cookie": "__Host-gateway_session=x"})
    assert response.status_code == 302 and "Cookie" not in response.headers.get_list("vary")
