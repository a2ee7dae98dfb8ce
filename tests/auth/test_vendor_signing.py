"""The vendor signing helper, and the test vectors published in docs/vendor-auth.md."""

from __future__ import annotations

import ast
import hashlib
import hmac
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway import vendor_signing

DOC = Path(__file__).resolve().parents[2] / "docs" / "vendor-auth.md"
_FENCE = re.compile(r"^```[a-z]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_BODY_BELOW = re.compile(r"^the (\d+) bytes below$")


@dataclass(frozen=True)
class Vector:
    title: str
    fields: dict[str, str]
    body: bytes | None  # None: no body given (a GET); b"": an explicitly empty body
    canonical: str
    headers: str

    @property
    def version(self) -> int:
        return int(self.fields.get("version", "1"))  # no version line: the vectors published for version 1


def _vectors() -> list[Vector]:
    sections = re.split(r"^#{3,4} ", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    vectors = []
    for section in sections:
        if not section.startswith("Vector"):
            continue
        blocks = [block.rstrip("\n") for block in _FENCE.findall(section)]
        fields = dict(
            (name.strip(), value.strip()) for name, value in (line.split(":", 1) for line in blocks[0].splitlines())
        )
        described = fields.get("body", "none")
        body: bytes | None = None
        if match := _BODY_BELOW.match(described):
            assert len(blocks) == 4, "a vector with a body shows it in its own block"
            body = blocks[1].encode("utf-8")
            assert len(body) == int(match.group(1)), "the stated length is the body's length in bytes"
        elif described.startswith("empty"):
            body = b""
        else:
            assert described == "none", described
        canonical, headers = blocks[-2:]
        vectors.append(Vector(section.splitlines()[0], fields, body, canonical, headers))
    return vectors


VECTORS = _vectors()


def test_the_docs_hold_vectors_of_both_versions() -> None:
    versions = [vector.version for vector in VECTORS]
    assert versions.count(1) >= 4 and versions.count(2) >= 3
    v2 = [vector for vector in VECTORS if vector.version == 2]
    # A GET without a body, a POST with a JSON body, a POST with an empty body.
    assert any(v.fields["method"] == "GET" and v.body is None for v in v2)
    assert any(v.fields["method"] == "POST" and v.body and v.body.startswith(b"{") for v in v2)
    assert any(v.fields["method"] == "POST" and v.body == b"" for v in v2)


@pytest.mark.parametrize("vector", VECTORS, ids=[v.title.split(":")[0] for v in VECTORS])
def test_documented_vectors(vector: Vector) -> None:
    fields = vector.fields
    url = urlsplit(fields["url"])
    timestamp = int(fields["timestamp"])
    digest = None if vector.version == 1 else vendor_signing.content_sha256(vector.body or b"")
    canonical = vendor_signing.canonical_string(fields["method"], url.path, url.query, timestamp, fields["key id"],
                                                digest)
    assert canonical == vector.canonical
    signed = vendor_signing.sign_request(fields["method"], fields["url"], key_id=fields["key id"],
                                         secret=fields["secret"], timestamp=timestamp, body=vector.body,
                                         version=vector.version)
    assert vendor_signing.format_headers(signed) == vector.headers


@pytest.mark.parametrize("vector", VECTORS, ids=[v.title.split(":")[0] for v in VECTORS])
def test_documented_vectors_by_hand(vector: Vector) -> None:
    # The published numbers, recomputed with nothing but hashlib and hmac on the published text: an
    # implementer in another language who follows the page gets them too.
    headers = dict(line.split(": ", 1) for line in vector.headers.splitlines())
    mac = hmac.new(vector.fields["secret"].encode(), vector.canonical.encode(), hashlib.sha256).hexdigest()
    assert headers["X-Gateway-Signature"] == mac
    lines = vector.canonical.split("\n")
    if vector.version == 1:
        assert len(lines) == 6 and lines[0] == "GATEWAY-HMAC-SHA256"
        assert set(headers) == {"X-Gateway-Key-Id", "X-Gateway-Timestamp", "X-Gateway-Signature"}
        return
    digest = hashlib.sha256(vector.body or b"").hexdigest()
    assert len(lines) == 7 and lines[0] == "GATEWAY-HMAC-SHA256-V2" and lines[6] == digest
    assert headers["X-Gateway-Content-SHA256"] == digest
    assert headers["X-Gateway-Signature-Version"] == "2"


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


EMPTY = hashlib.sha256(b"").hexdigest()


def test_signature_binds_every_part() -> None:
    base: tuple[Any, ...] = ("GET", "/v1/x", "a=1", 1700000000, "k1", EMPTY)
    variants: list[tuple[Any, ...]] = [
        base,
        ("HEAD", *base[1:]),
        ("GET", "/v1/y", *base[2:]),
        (*base[:2], "a=2", *base[3:]),
        (*base[:3], 1700000001, *base[4:]),
        (*base[:4], "k2", EMPTY),
        (*base[:5], hashlib.sha256(b"{}").hexdigest()),
        base[:5],  # version 1 of the same request
    ]
    signatures = {vendor_signing.sign(vendor_signing.canonical_string(*variant), "s" * 32) for variant in variants}
    signatures.add(vendor_signing.sign(vendor_signing.canonical_string(*base), "t" * 32))
    assert len(signatures) == 9


def test_the_two_versions_never_share_a_canonical_string() -> None:
    v1 = vendor_signing.canonical_string("GET", "/v1/x", "", 1, "k1")
    v2 = vendor_signing.canonical_string("GET", "/v1/x", "", 1, "k1", EMPTY)
    assert v1.split("\n")[0] == "GATEWAY-HMAC-SHA256" and v2.split("\n")[0] == "GATEWAY-HMAC-SHA256-V2"
    assert v2.split("\n")[1:6] == v1.split("\n")[1:]
    # The digest is signed in lower case, whatever case it was given in.
    assert vendor_signing.canonical_string("GET", "/v1/x", "", 1, "k1", EMPTY.upper()) == v2


def test_sign_request_defaults_to_version_2_now_and_accepts_relative_urls() -> None:
    headers = vendor_signing.sign_request("GET", "/v1/x?b=1", key_id="k1", secret=b"s" * 32)
    assert list(headers) == ["X-Gateway-Key-Id", "X-Gateway-Timestamp", "X-Gateway-Signature-Version",
                             "X-Gateway-Content-SHA256", "X-Gateway-Signature"]
    assert headers["X-Gateway-Signature-Version"] == "2"
    assert headers["X-Gateway-Content-SHA256"] == EMPTY == vendor_signing.EMPTY_SHA256  # no body: the empty one
    assert re.fullmatch(r"[0-9a-f]{64}", headers["X-Gateway-Signature"])
    assert headers["X-Gateway-Timestamp"].isdigit()


def test_sign_request_signs_the_body_bytes() -> None:
    def sign(body: bytes | str | None) -> dict[str, str]:
        return vendor_signing.sign_request("POST", "/v1/sign", key_id="k1", secret="s" * 32, timestamp=1, body=body)

    body = '{"dataset":"d","keys":["caf\u00e9"]}'
    assert sign(body) == sign(body.encode("utf-8"))  # text is sent, and so signed, as UTF-8
    assert sign(body)["X-Gateway-Content-SHA256"] == hashlib.sha256(body.encode("utf-8")).hexdigest()
    assert sign(None) == sign(b"") == sign("")
    # Byte for byte: a final newline or re-serialized JSON is another body, with another signature.
    others = {sign(b)["X-Gateway-Signature"] for b in (body, body + "\n", body.replace(",", ", "), b"")}
    assert len(others) == 4


def test_sign_request_still_makes_version_1_but_never_with_a_body() -> None:
    headers = vendor_signing.sign_request("GET", "/v1/x", key_id="k1", secret="s" * 32, timestamp=1, version=1)
    assert set(headers) == {"X-Gateway-Key-Id", "X-Gateway-Timestamp", "X-Gateway-Signature"}
    expected = vendor_signing.sign(vendor_signing.canonical_string("GET", "/v1/x", "", 1, "k1"), "s" * 32)
    assert headers["X-Gateway-Signature"] == expected
    with pytest.raises(ValueError, match="does not cover the body"):
        vendor_signing.sign_request("POST", "/v1/sign", key_id="k1", secret="s" * 32, body=b"{}", version=1)
    with pytest.raises(ValueError, match="1 or 2"):
        vendor_signing.sign_request("GET", "/v1/x", key_id="k1", secret="s" * 32, version=3)
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
