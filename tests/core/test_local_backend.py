"""The local-disk backend: its own HMAC URL signature, and no way out of its directory."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from gateway.backends import Backend, FileSource
from gateway.backends.local import LocalBackend
from gateway.config import LocalBackend as LocalBackendConfig
from gateway.errors import Forbidden, NotFound
from gateway.models import DenyReason

NOW = 1_700_000_000
KEY = b"local-backend-test-key-0123456789abcdef"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"png")
    (root / "images" / "b c.png").write_bytes(b"png")
    (tmp_path / "secret.txt").write_text("outside the root")
    (tmp_path / "data-evil").mkdir()
    (tmp_path / "data-evil" / "x.txt").write_text("a sibling whose name starts like the root")
    return root


@pytest.fixture
def make_backend(root: Path) -> Callable[..., LocalBackend]:
    def make(*, signing_key: bytes = KEY, dataset: str = "local", path: Path | None = None) -> LocalBackend:
        config = LocalBackendConfig(kind="local", path=path or root)
        return LocalBackend(config, dataset=dataset, base_url="https://gw.example.test/", signing_key=signing_key)

    return make


def signed(backend: LocalBackend, key: str, *, expires_in: int = 300) -> tuple[str, str, str]:
    """(key as it appears in the URL path, exp, sig)."""
    [url] = asyncio.run(backend.sign([key], signed_at=NOW, expires_in=expires_in))
    parts = urlsplit(url.url)
    query = parse_qs(parts.query)
    assert url.expires_at == NOW + expires_in
    return unquote(parts.path.split("/v1/local/local/", 1)[1]), query["exp"][0], query["sig"][0]


def test_it_implements_both_protocols(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    assert isinstance(backend, Backend)
    assert isinstance(backend, FileSource)
    assert backend.health()["ok"] is True


def test_sign_then_resolve(make_backend: Callable[..., LocalBackend], root: Path) -> None:
    backend = make_backend()
    for key in ("images/a.png", "images/b c.png"):
        url_key, exp, sig = signed(backend, key)
        assert url_key == key
        assert resolve(backend, key, exp=exp, sig=sig, now=NOW + 10) == (root / key).resolve()


def test_signing_is_deterministic(make_backend: Callable[..., LocalBackend]) -> None:
    assert signed(make_backend(), "images/a.png") == signed(make_backend(), "images/a.png")
    assert signed(make_backend(), "images/a.png")[2] != signed(make_backend(signing_key=b"x" * 32), "images/a.png")[2]


def _flip(text: str) -> str:
    return ("A" if text[0] != "A" else "B") + text[1:]


def test_tampering_is_refused(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    key, exp, sig = signed(backend, "images/a.png")
    cases = {
        "sig": dict(key=key, exp=exp, sig=_flip(sig)),
        "sig-truncated": dict(key=key, exp=exp, sig=sig[:-1]),
        "sig-empty": dict(key=key, exp=exp, sig=""),
        "sig-padded": dict(key=key, exp=exp, sig=sig + "="),
        "exp": dict(key=key, exp=str(int(exp) + 3600), sig=sig),
        "key": dict(key="images/b c.png", exp=exp, sig=sig),
        "other-dataset": None,
    }
    for name, args in cases.items():
        if args is None:
            other = make_backend(dataset="other")
            with pytest.raises(Forbidden):
                resolve(other, key, exp=exp, sig=sig, now=NOW)
            continue
        with pytest.raises(Forbidden) as info:
            resolve(backend, args["key"], exp=args["exp"], sig=args["sig"], now=NOW)
        assert info.value.reason == DenyReason.BAD_SIGNATURE, name


def test_an_expired_url_is_refused(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend()
    key, exp, sig = signed(backend, "images/a.png", expires_in=60)
    assert resolve(backend, key, exp=exp, sig=sig, now=NOW + 60)  # still valid at its expiry second
    with pytest.raises(Forbidden) as info:
        resolve(backend, key, exp=exp, sig=sig, now=NOW + 60.5)
    assert info.value.reason == DenyReason.EXPIRED


@pytest.mark.parametrize("exp", ["", "abc", "-1", "+1700000300", " 1700000300", "1700000300 ", "1.7e9", "0x10",
                                 "1" * 13, "1_700_000_300"])
def test_a_malformed_exp_is_refused(make_backend: Callable[..., LocalBackend], exp: str) -> None:
    backend = make_backend()
    key, _, sig = signed(backend, "images/a.png")
    with pytest.raises(Forbidden) as info:
        resolve(backend, key, exp=exp, sig=sig, now=NOW)
    assert info.value.reason == DenyReason.BAD_SIGNATURE


@pytest.mark.parametrize("exp", ["\u00b2", "1700000300\u00b9"])
def test_a_non_ascii_digit_exp_is_refused(make_backend: Callable[..., LocalBackend], exp: str) -> None:
    backend = make_backend()
    key, _, sig = signed(backend, "images/a.png")
    with pytest.raises(Forbidden):
        resolve(backend, key, exp=exp, sig=sig, now=NOW)


def resolve(backend: LocalBackend, key: str, *, exp: str, sig: str, now: float) -> Path:
    """The URL's signature checked, then its file: what the admit step and the local read do."""
    backend.verify(key, exp=exp, sig=sig, now=now)
    return backend.path(key)


def _resolve(backend: LocalBackend, key: str) -> Path:
    _, exp, sig = signed(backend, key)
    return resolve(backend, key, exp=exp, sig=sig, now=NOW)


def test_a_symlink_pointing_outside_the_root_is_not_found(make_backend: Callable[..., LocalBackend], root: Path,
                                                         tmp_path: Path) -> None:
    (root / "images" / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "out").symlink_to(tmp_path)
    (root / "sibling").symlink_to(tmp_path / "data-evil")
    (root / "abs").symlink_to("/etc")
    backend = make_backend()
    for key in ("images/escape.txt", "out/secret.txt", "sibling/x.txt", "abs/hostname"):
        with pytest.raises(NotFound):
            _resolve(backend, key)


def test_a_symlink_inside_the_root_is_served(make_backend: Callable[..., LocalBackend], root: Path) -> None:
    (root / "latest.png").symlink_to(root / "images" / "a.png")
    (root / "pics").symlink_to("images")
    backend = make_backend()
    assert _resolve(backend, "latest.png") == (root / "images" / "a.png").resolve()
    assert _resolve(backend, "pics/a.png") == (root / "images" / "a.png").resolve()


def test_a_root_that_is_itself_a_symlink(make_backend: Callable[..., LocalBackend], root: Path,
                                         tmp_path: Path) -> None:
    (tmp_path / "current").symlink_to(root)
    backend = make_backend(path=tmp_path / "current")
    assert _resolve(backend, "images/a.png") == (root / "images" / "a.png").resolve()
    (root / "up").symlink_to("..")
    with pytest.raises(NotFound):
        _resolve(backend, "up/secret.txt")


def test_only_regular_files_are_served(make_backend: Callable[..., LocalBackend], root: Path) -> None:
    os.mkfifo(root / "pipe")
    (root / "dangling").symlink_to(root / "nothing-here")
    backend = make_backend()
    for key in ("images", "pipe", "missing.png", "images/missing.png", "dangling"):
        with pytest.raises(NotFound):
            _resolve(backend, key)
