"""Object keys: canonicalized once, and nothing that could leave the dataset survives."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidKey
from gateway.keys import MAX_KEY_BYTES, canonical_key, compile_globs, join_prefix, validate_key

BAD_KEYS = {
    # dot segments, in every encoding
    "dotdot": "..",
    "dot": ".",
    "encoded-dotdot": "%2e%2e",
    "mixed-case-dotdot": "%2E%2e",
    "half-encoded-dotdot": ".%2e",
    "encoded-dot": "%2e",
    "double-encoded-dotdot": "%252e%252e",
    "triple-encoded-dotdot": "%25252e%25252E",
    "dotdot-in-the-middle": "a/../b",
    "dot-in-the-middle": "a/./b",
    "trailing-dotdot": "a/b/..",
    "dotdot-encoded-slash": "..%2f",
    "all-encoded": "%2e%2e%2f",
    "dotdot-encoded-slash-then-key": "..%2Fetc%2Fpasswd",
    # backslashes
    "backslash": "a\\b",
    "encoded-backslash": "a%5cb",
    "encoded-backslash-upper": "..%5C..%5Cwin.ini",
    # control characters, CR and LF anywhere
    "nul": "a%00b",
    "trailing-nul": "a.png%00",
    "cr": "a%0db",
    "lf": "a%0ab",
    "crlf-header-injection": "a%0d%0aSet-Cookie:%20x",
    "tab": "a%09b",
    "unit-separator": "a%1fb",
    "del": "a%7fb",
    "c1-nel": "a%c2%85b",
    "line-separator": "a%e2%80%a8b",
    "paragraph-separator": "a%e2%80%a9b",
    # empty segments
    "empty": "",
    "leading-slash": "/a",
    "encoded-leading-slash": "%2fa",
    "trailing-slash": "a/",
    "double-slash": "a//b",
    "encoded-double-slash": "a%2f%2fb",
    # invalid UTF-8
    "lone-ff": "a%ffb",
    "overlong-slash": "%c0%af",
    "overlong-dot": "%c0%ae%c0%ae",
    "encoded-surrogate": "%ed%a0%80",
    "truncated-sequence": "a%e2%82",
}


@pytest.mark.parametrize("raw", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_bad_keys_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidKey):
        canonical_key(raw)
    with pytest.raises(InvalidKey):
        canonical_key(raw.encode("ascii"))  # as the HTTP layer passes it: the raw path bytes


@pytest.mark.parametrize("raw", ["a\rb", "a\nb", "a\x00b", "a\x0bb", "a\u2028b", "a\\b", "", "/a", "a/", "..",
                                 "\ud800"])
def test_bad_decoded_keys_are_rejected(raw: str) -> None:
    """Batch requests send keys already decoded, as JSON strings."""
    with pytest.raises(InvalidKey):
        validate_key(raw)


def test_invalid_key_is_a_400() -> None:
    with pytest.raises(InvalidKey) as info:
        canonical_key("..")
    assert info.value.status == 400


GOOD_KEYS = {
    "plain": ("images/0001.png", "images/0001.png"),
    "unicode": ("%E6%97%A5%E6%9C%AC/donn%C3%A9es.pcd", "日本/données.pcd"),
    "emoji": ("%F0%9F%9A%97.jpg", "🚗.jpg"),
    "encoded-space": ("a%20b.png", "a b.png"),
    "literal-space": ("a b.png", "a b.png"),
    "plus-is-not-space": ("a+b.png", "a+b.png"),
    "tilde": ("~user/a.png", "~user/a.png"),
    "encoded-percent": ("100%25.png", "100%.png"),
    "encoded-slash-is-a-separator": ("a%2Fb", "a/b"),
    "dots-inside-names": ("a..b/...", "a..b/..."),
    "dotfile": (".hidden/.x", ".hidden/.x"),
    "three-dots": ("...", "..."),
}


@pytest.mark.parametrize(("raw", "key"), GOOD_KEYS.values(), ids=GOOD_KEYS.keys())
def test_good_keys(raw: str, key: str) -> None:
    assert canonical_key(raw) == key
    assert canonical_key(raw.encode("ascii")) == key


def test_raw_utf8_bytes_are_decoded() -> None:
    """A client that sends UTF-8 without percent-encoding it still gets its key."""
    assert canonical_key("日本/é.png".encode()) == "日本/é.png"


def test_a_str_key_outside_latin1_is_the_key_itself() -> None:
    assert canonical_key("日本.png") == "日本.png"
    assert canonical_key("日本/%E6%97%A5.png") == "日本/日.png"  # raw and percent-encoded UTF-8 together
    with pytest.raises(InvalidKey, match="UTF-8"):
        canonical_key("\ud800.png")  # a lone surrogate is no UTF-8


@settings(max_examples=2000, deadline=None)
@given(st.text(st.characters(blacklist_categories=()), max_size=20))
def test_any_str_key_is_its_canonical_form_or_invalid_key(raw: str) -> None:
    """Whatever str the server hands over (any code point, surrogates too), the answer is a valid key
    or InvalidKey; without a "%" nothing is decoded, so the key is the text itself."""
    try:
        key = canonical_key(raw)
    except InvalidKey:
        return
    assert validate_key(key) == key
    if "%" not in raw:
        assert key == raw


def _key_of_bytes(n: int, unit: str) -> str:
    """A key of exactly ``n`` UTF-8 bytes built from a multi-byte character."""
    width = len(unit.encode())
    key = unit * (n // width) + "a" * (n % width)
    assert len(key.encode()) == n and len(key) < n
    return key


@pytest.mark.parametrize("unit", ["é", "€", "🚗"])
def test_length_is_counted_in_bytes(unit: str) -> None:
    exact = _key_of_bytes(MAX_KEY_BYTES, unit)
    assert canonical_key(quote(exact, safe="/")) == exact
    assert validate_key(exact) == exact
    over = _key_of_bytes(MAX_KEY_BYTES + 1, unit)
    assert len(over) <= MAX_KEY_BYTES  # fewer characters than the limit, more bytes
    with pytest.raises(InvalidKey):
        canonical_key(quote(over, safe="/"))
    with pytest.raises(InvalidKey):
        validate_key(over)


def test_the_limit_is_1024_bytes() -> None:
    assert MAX_KEY_BYTES == 1024
    validate_key("a" * 1024)
    with pytest.raises(InvalidKey):
        validate_key("a" * 1025)


def test_percent_encoding_is_decoded_exactly_once() -> None:
    assert canonical_key("%2541") == "%41"
    assert canonical_key("a%252Fb") == "a%2Fb"  # one segment, not two


def test_join_prefix_stays_under_the_prefix() -> None:
    assert join_prefix("datasets/driving/", "images/a.png") == "datasets/driving/images/a.png"


# -- properties -----------------------------------------------------------------------------------

_FRAGMENTS = st.sampled_from(["/", ".", "..", "%", "%2e", "%2E", "%25", "%2f", "a", "é", "日", " ", "+", "~",
                              "\\", "\x00", "\n", "\u2028", "🚗", "%c0%af", "%252e"])
KEYS = st.one_of(
    st.lists(_FRAGMENTS, max_size=12).map("".join),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
)


@given(KEYS)
def test_accepted_keys_round_trip_through_percent_encoding(key: str) -> None:
    try:
        validate_key(key)
    except InvalidKey:
        assume(False)
    assert canonical_key(quote(key, safe="")) == key
    assert canonical_key(quote(key, safe="/").encode("ascii")) == key


@given(KEYS)
def test_no_accepted_key_has_a_dot_segment(key: str) -> None:
    try:
        canonical = canonical_key(key.encode("utf-8"))
    except InvalidKey:
        return
    for segment in canonical.split("/"):
        assert segment not in {"", ".", ".."}
    assert "\\" not in canonical
    assert len(canonical.encode()) <= MAX_KEY_BYTES


# -- globs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("globs", "key", "matches"),
    [
        (["images/*"], "images/a.png", True),
        (["images/*"], "images/sub/a.png", False),  # * stays within one segment
        (["images/*"], "images/", True),
        (["images/**"], "images/sub/deeper/a.png", True),  # ** crosses segments
        (["images/**"], "pointclouds/a.pcd", False),
        (["images/*"], "x/images/a.png", False),  # anchored at the start
        (["*.png"], "a.png.exe", False),  # anchored at the end
        (["*.png"], "dir/a.png", False),
        (["**.png"], "dir/a.png", True),
        (["img?.png"], "img1.png", True),
        (["img?.png"], "img12.png", False),
        (["img?.png"], "img/.png", False),  # ? is one character, never a slash
        (["a.b"], "axb", False),  # regex metacharacters are literal
        (["a.b"], "a.b", True),
        (["(x)+"], "xx", False),
        (["(x)+"], "(x)+", True),
        (["[ab]"], "a", False),
        (["[ab]"], "[ab]", True),
        (["a|b"], "a", False),
        (["$^"], "$^", True),
        (["images/**", "pointclouds/**"], "pointclouds/p.pcd", True),
        (["images/**", "pointclouds/**"], "labels/l.json", False),
        (["**"], "any/thing\nat all", True),
    ],
)
def test_compile_globs(globs: list[str], key: str, matches: bool) -> None:
    assert (compile_globs(globs).match(key) is not None) is matches


# -- the one-scan fast path against the obvious per-segment check it replaced -----------------------

_REFERENCE_DOTS = re.compile(r"%(25)*2e", re.IGNORECASE)


def _reference_ok(key: str) -> bool:
    """The per-segment rules written out plainly (what validate_key's single scan must agree with)."""
    if not key or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return False
    if re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", key) or "\\" in key:
        return False
    return all(segment and _REFERENCE_DOTS.sub(".", segment) not in {".", ".."} for segment in key.split("/"))


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("/.%25eEa\\\n\x00\u2028b")), min_size=1, max_size=24))
def test_the_single_scan_agrees_with_the_per_segment_rules(key: str) -> None:
    try:
        validate_key(key)
        ok = True
    except InvalidKey:
        ok = False
    assert ok is _reference_ok(key), key
