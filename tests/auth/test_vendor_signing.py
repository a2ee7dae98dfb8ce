"""The vendor signing helper, and the test vectors published in docs/vendor-auth.md."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway import vendor_signing

DOC = Path(__file__).resolve().parents[2] / "docs" / "vendor-auth.md"
_FENCE = re.compile(r"^```[a-z]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _vectors() -> list[tuple[str, dict[str, str], str, str]]:
    sections = re.split(r"^### ", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    vectors = []
    for section in sections:
        if not section.startswith("Vector"):
            continue
        inputs, canonical, headers = (block.rstrip("\n") for block in _FENCE.findall(section))
        fields = dict(
            (name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in inputs.splitlines())
        )
        vectors.append((section.splitlines()[0], fields, canonical, headers))
    return vectors


VECTORS = _vectors()


def test_the_docs_hold_vectors() -> None:
    assert len(VECTORS) >= 4


@pytest.mark.parametrize(("title", "fields", "canonical", "headers"), VECTORS, ids=[v[0][:9] for v in VECTORS])
def test_documented_vectors(title: str, fields: dict[str, str], canonical: str, headers: str) -> None:
    url = urlsplit(fields["url"])
    timestamp = int(fields["timestamp"])
    assert vendor_signing.canonical_string(fields["method"], url.path, url.query, timestamp,
                                           fields["key id"]) == canonical
    signed = vendor_signing.sign_request(
        fields["method"], fields["url"], key_id=fields["key id"], secret=fields["secret"], timestamp=timestamp
    )
    assert vendor_signing.format_headers(signed) == headers


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a%2Fb", "/a%2Fb"),  # an encoded slash is not a separator
        ("/a%2fb", "/a%2Fb"),
        ("/%7e~%7E", "/~~~"),
        ("/a b", "/a%20b"),
        ("/a+b", "/a%2Bb"),
        ("/a%2Bb", "/a%2Bb"),
        ("/caf\u00e9", "/caf%C3%A9"),
        ("/100%", "/100%25"),
        ("/%zz", "/%25zz"),
        ("/%25zz", "/%25zz"),
        ("//a/./../", "//a/./../"),
        ("/a;b=c,d!$&'()*:@", "/a%3Bb%3Dc%2Cd%21%24%26%27%28%29%2A%3A%40"),
    ],
)
def test_canonical_path(path: str, canonical: str) -> None:
    assert vendor_signing.canonical_path(path) == canonical


def test_canonical_path_takes_wire_bytes() -> None:
    assert vendor_signing.canonical_path(b"/caf\xc3\xa9") == vendor_signing.canonical_path("/caf\u00e9") == "/caf%C3%A9"
    assert vendor_signing.canonical_path(b"/\xff") == "/%FF"  # not UTF-8: still one stable encoding


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        ("", ""),
        ("&&", ""),
        ("b=2&a=1", "a=1&b=2"),
        ("a=2&a=10&a=1", "a=1&a=10&a=2"),  # sorted as encoded ASCII text, repeats kept
        ("flag", "flag="),
        ("a=b=c", "a=b%3Dc"),
        ("x+y=%2B+", "x%20y=%2B%20"),
        ("k=%7e%41", "k=~A"),
        ("Z=1&a=1&_=1", "Z=1&_=1&a=1"),
    ],
)
def test_canonical_query(query: str, canonical: str) -> None:
    assert vendor_signing.canonical_query(query) == canonical


def test_signature_binds_every_part() -> None:
    base = ("GET", "/v1/x", "a=1", 1700000000, "k1")
    variants = [
        base,
        ("HEAD", *base[1:]),
        ("GET", "/v1/y", *base[2:]),
        (*base[:2], "a=2", *base[3:]),
        (*base[:3], 1700000001, "k1"),
        (*base[:4], "k2"),
    ]
    signatures = {vendor_signing.sign(vendor_signing.canonical_string(*variant), "s" * 32) for variant in variants}
    signatures.add(vendor_signing.sign(vendor_signing.canonical_string(*base), "t" * 32))
    assert len(signatures) == 7


def test_sign_request_defaults_to_now_and_accepts_relative_urls() -> None:
    headers = vendor_signing.sign_request("GET", "/v1/x?b=1", key_id="k1", secret=b"s" * 32)
    assert set(headers) == {"X-Gateway-Key-Id", "X-Gateway-Timestamp", "X-Gateway-Signature"}
    assert re.fullmatch(r"[0-9a-f]{64}", headers["X-Gateway-Signature"])
    assert headers["X-Gateway-Timestamp"].isdigit()
    # The secret's surrounding whitespace (a trailing newline from a file) is not part of it.
    from_file = vendor_signing.sign_request("GET", "/", key_id="k1", secret="abc\n", timestamp=1)
    assert from_file == vendor_signing.sign_request("GET", "/", key_id="k1", secret=b"abc", timestamp=1)


def test_format_headers() -> None:
    assert vendor_signing.format_headers({"A": "1", "B-C": "x y"}) == "A: 1\nB-C: x y"


def test_client_is_a_standard_library_leaf() -> None:
    source = Path(vendor_signing.__file__).read_text(encoding="utf-8")
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            modules.add((node.module or "").split(".")[0])
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules
