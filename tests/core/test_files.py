"""Serving one local file: Range, conditional requests and content types (RFC 9110)."""

from __future__ import annotations

import os
from email.utils import formatdate
from pathlib import Path

import pytest

from gateway.api.files import _not_modified, _range, content_type, entity_tag, file_response
from gateway.errors import NotFound, RangeNotSatisfiable

KEY = b"k" * 32


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=0-0", 10, (0, 0)),
    ("bytes=0-9", 10, (0, 9)),
    ("bytes=2-5", 10, (2, 5)),
    ("bytes=-1", 10, (9, 9)),
    ("bytes=-3", 10, (7, 9)),
    ("bytes=5-", 10, (5, 9)),
    ("bytes=9-", 10, (9, 9)),
    ("bytes=-20", 10, (0, 9)),  # a suffix longer than the file is the whole file
    ("bytes=5-100", 10, (5, 9)),  # an end past the end is clamped
    (" bytes=1-2 ", 10, (1, 2)),
])
def test_satisfiable_ranges(header: str, size: int, expected: tuple[int, int]) -> None:
    assert _range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=10-20", 10),
    ("bytes=11-12", 10),
    ("bytes=-0", 10),  # a zero-length suffix selects nothing
    ("bytes=0-0", 0),
])
def test_unsatisfiable_ranges_carry_the_size(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        _range(header, size)
    assert info.value.size == size
    assert info.value.status == 416


@pytest.mark.parametrize("header", [
    None, "", "bytes=5-3",  # end before start: invalid, ignored
    "bytes=0-1,3-4", "bytes=0-0, -1",  # several ranges: ignored
    "bytes=abc", "bytes=-", "bytes=", "items=0-1", "bytes 0-1", "bytes=0x1-2", "bytes=1-2-3", "bytes=+1-2",
])
def test_invalid_or_multiple_ranges_are_ignored(header: str | None) -> None:
    assert _range(header, 10) is None


def test_a_suffix_range_on_an_empty_file_is_not_416() -> None:
    assert _range("bytes=-1", 0) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=500-", 10), ("bytes=0-", 0)])
def test_an_open_range_starting_past_the_end_is_416(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        _range(header, size)
    assert info.value.size == size


def test_non_ascii_digits_are_not_a_range() -> None:
    assert _range("bytes=\u0661-\u0662", 10) is None


# -- conditional requests ---------------------------------------------------------------------------

ETAG = '"1a2b-10-99"'
MTIME = 1_700_000_000


@pytest.mark.parametrize(("headers", "not_modified"), [
    ({"if-none-match": ETAG}, True),
    ({"if-none-match": f'"other", {ETAG}'}, True),
    ({"if-none-match": f'"other",{ETAG} , "third"'}, True),
    ({"if-none-match": f"W/{ETAG}"}, True),  # If-None-Match uses the weak comparison
    ({"if-none-match": "*"}, True),
    ({"if-none-match": '"other"'}, False),
    ({"if-none-match": ETAG.strip('"')}, False),  # an unquoted tag is a different tag
    ({"if-none-match": '"other"', "if-modified-since": formatdate(MTIME + 60, usegmt=True)}, False),
    ({"if-modified-since": formatdate(MTIME, usegmt=True)}, True),
    ({"if-modified-since": formatdate(MTIME + 3600, usegmt=True)}, True),
    ({"if-modified-since": formatdate(MTIME - 1, usegmt=True)}, False),
    ({"if-modified-since": "yesterday"}, False),
    ({"if-modified-since": ""}, False),
    ({"if-modified-since": "Mon, 99 Foo 2023 99:99:99 GMT"}, False),
    ({}, False),
])
def test_not_modified(headers: dict[str, str], not_modified: bool) -> None:
    assert _not_modified(headers, ETAG, MTIME) is not_modified


# -- content types -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("a.png", "image/png"),
    ("a.PNG", "image/png"),
    ("a.jpg", "image/jpeg"),
    ("a.jpeg", "image/jpeg"),
    ("a.webp", "image/webp"),
    ("a.bin", "application/octet-stream"),
    ("no-suffix", "application/octet-stream"),
])
def test_standard_content_types(name: str, expected: str) -> None:
    assert content_type(Path(name)) == expected


@pytest.mark.parametrize("suffix", [".pcd", ".ply", ".npy", ".bin"])
def test_point_cloud_and_array_files_are_never_served_as_text(suffix: str) -> None:
    kind = content_type(Path("scan" + suffix))
    assert kind.startswith("application/"), kind
    assert content_type(Path("SCAN" + suffix.upper())) == kind


# -- file_response headers on a real file ------------------------------------------------------------------

def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "scan.pcd"
    path.write_bytes(bytes(range(100)))
    return path


def test_head_with_a_range(sample: Path) -> None:
    before = _open_fds()
    response = file_response(sample, "HEAD", {"range": "bytes=10-19"}, 30, etag_key=KEY)
    assert response.status_code == 206
    assert response.headers["content-range"] == "bytes 10-19/100"
    assert response.headers["content-length"] == "10"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["cache-control"] == "private, max-age=30"
    assert _open_fds() == before


def test_a_matching_etag_is_304_and_the_range_past_the_end_is_416(sample: Path) -> None:
    first = file_response(sample, "HEAD", {}, 0, etag_key=KEY)
    assert first.status_code == 200
    assert first.headers["content-length"] == "100"
    before = _open_fds()
    again = file_response(sample, "GET", {"if-none-match": first.headers["etag"]}, 0, etag_key=KEY)
    assert again.status_code == 304
    with pytest.raises(RangeNotSatisfiable):
        file_response(sample, "GET", {"range": "bytes=100-150"}, 0, etag_key=KEY)
    assert _open_fds() == before  # neither answer leaked the file descriptor


def test_if_range_with_another_validator_sends_the_whole_file(sample: Path) -> None:
    response = file_response(sample, "HEAD", {"range": "bytes=0-0", "if-range": '"stale"'}, 0, etag_key=KEY)
    assert response.status_code == 200
    assert response.headers["content-length"] == "100"


def test_a_symlink_as_the_final_component_is_refused(sample: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.pcd"
    link.symlink_to(sample)
    with pytest.raises(NotFound):
        file_response(link, "HEAD", {}, 0, etag_key=KEY)


def test_the_etag_tells_nothing_about_the_file_system_and_follows_the_file(sample: Path) -> None:
    st = os.stat(sample)
    etag = file_response(sample, "HEAD", {}, 0, etag_key=KEY).headers["etag"]
    assert f"{st.st_ino:x}" not in etag and str(st.st_ino) not in etag  # no inode number
    assert etag == entity_tag(KEY, sample, st.st_size, st.st_mtime_ns)
    assert etag != entity_tag(b"x" * 32, sample, st.st_size, st.st_mtime_ns)  # keyed
    os.utime(sample, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert file_response(sample, "HEAD", {}, 0, etag_key=KEY).headers["etag"] != etag  # a changed file
