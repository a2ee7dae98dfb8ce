"""``allow_keys`` globs: linear in the key whatever the glob, as fast as before on ordinary globs, and
with exactly the old meaning (``*`` within a segment, ``**`` across, ``?`` one non-slash character,
anchored at both ends)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import timeit
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.keys import MAX_KEY_BYTES, compile_globs

ROOT = Path(__file__).resolve().parents[2]


def reference_globs(globs: list[str]) -> re.Pattern[str]:
    """The translation compile_globs used before (kept as the meaning to agree with): exact, but it
    backtracks, so that ``**a**a**a...**b`` takes seconds on a 30-character key."""
    parts = []
    for glob in globs:
        out = []
        i = 0
        while i < len(glob):
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
            elif glob[i] == "*":
                out.append("[^/]*")
                i += 1
            elif glob[i] == "?":
                out.append("[^/]")
                i += 1
            else:
                out.append(re.escape(glob[i]))
                i += 1
        parts.append("".join(out))
    return re.compile("(?:" + "|".join(parts) + r")\Z", re.DOTALL)


# -- the same meaning ---------------------------------------------------------------------------------

# Globs built from pieces that make structure (``**/``, ``*/``), not from characters alone, which
# seldom line up into ``**/*/*``; ``$(é`` check that everything else is literal.
GLOB = st.lists(st.sampled_from(["a", "b", ".", "/", "*", "**", "?", "/*", "*/", "**/", "$(", "é"]), max_size=7)
GLOBS = st.lists(GLOB.map("".join), min_size=1, max_size=3)
KEY_CHARACTERS = "ab/.$(é"


@st.composite
def glob_and_key(draw: st.DrawFn) -> tuple[list[str], str]:
    """Random globs, and a key that is random or one of the globs filled in (so that both answers
    come up often), sometimes with one character changed. Wildcards are filled from the glob's own
    characters, so that a piece also occurs where it must not be taken (``**a*b`` on ``a/ab``)."""
    globs = draw(GLOBS)
    if draw(st.booleans()):
        return globs, draw(st.text(KEY_CHARACTERS, max_size=14))
    glob = draw(st.sampled_from(globs))
    tokens = re.findall(r"\*\*|\*|\?|[^*?]", glob)
    alphabet = "".join(sorted(set(glob.replace("*", "").replace("?", "")) | {"a", "/"}))
    fills = iter(draw(st.lists(st.text(alphabet, max_size=6), min_size=len(tokens), max_size=len(tokens))))
    # ** takes its fill as it is, * without slashes, ? one character that is not a slash.
    filled = [{"**": fill, "*": fill.replace("/", ""), "?": (fill.replace("/", "") or "b")[0]}.get(token, token)
              for token, fill in zip(tokens, fills, strict=True)]
    key = "".join(filled)
    if key and draw(st.booleans()):
        at = draw(st.integers(0, len(key) - 1))
        key = key[:at] + draw(st.sampled_from(KEY_CHARACTERS)) + key[at + 1:]
    return globs, key


@settings(max_examples=3000, deadline=None)
@given(glob_and_key())
def test_the_same_answer_as_the_plain_translation(case: tuple[list[str], str]) -> None:
    globs, key = case
    assert (compile_globs(globs).match(key) is not None) is (reference_globs(globs).match(key) is not None)


# -- linear whatever the glob ---------------------------------------------------------------------------

HOSTILE = [  # each a dataset's allow_keys
    ["**a" * 40 + "**b"],  # the report: **a**a**a...**b
    ["*a" * 40 + "*b"],
    ["**a*" * 30 + "b"],
    ["*a*/" * 20 + "**b"],
    ["**a*a*a*a*a*a*b**"],
    ["a/**/a*a*a*a*b/**/c"],
    ["**" + "?" * 60 + "b"],
    ["**/" + "*a" * 30 + "*b"],
    ["**a/*" * 30 + "b"],
    ["**a**a**a**a**a**a**b", "**a*a*a*a*a*a*a*b", "*a" * 20 + "**b"],
]
KEYS = ["a" * MAX_KEY_BYTES, "a/" * (MAX_KEY_BYTES // 2 - 1) + "aa", ("a" * 31 + "/") * 31 + "a" * 32,
        ("a" * 200 + "/") * 5 + "a" * 19]

# Run in a child process: a matcher that backtracks would hold this one for hours, and a test that
# hangs is worse than one that fails.
CHILD = """
import json, sys, time
from gateway.keys import compile_globs
globs, keys = json.loads(sys.stdin.read())
worst = 0.0
for glob in globs:
    pattern = compile_globs(glob)
    for key in keys:
        started = time.perf_counter()
        pattern.match(key)
        worst = max(worst, time.perf_counter() - started)
print(worst)
"""


def test_hostile_globs_take_linear_time_on_the_longest_keys() -> None:
    assert all(len(key.encode()) == MAX_KEY_BYTES for key in KEYS)
    child = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps([HOSTILE, KEYS]), capture_output=True,
                           text=True, timeout=30, cwd=ROOT, check=True)
    assert float(child.stdout) < 0.05


def test_the_hostile_glob_is_hostile_to_the_plain_translation() -> None:
    """What the test above guards against: 22 characters already cost the old translation more than
    1,024 bytes cost the new one."""
    glob = ["**a" * 10 + "**b"]
    old = min(timeit.repeat(lambda: reference_globs(glob).match("a" * 22), number=1, repeat=2))
    new = min(timeit.repeat(lambda: compile_globs(glob).match("a" * MAX_KEY_BYTES), number=1, repeat=5))
    assert old > 20 * new


# -- as fast as before on ordinary globs ------------------------------------------------------------------

SEVERAL = ["images/**", "pointclouds/**/*.pcd", "labels/*.json", "thumbs/**/*.jpg"]
ORDINARY = [
    (["images/**"], "images/2024/06/drive-0042/frame-000123.png"),
    (["*.png"], "frame-000123-camera-front-left-0042.png"),
    (["pointclouds/**/*.pcd"], "pointclouds/2024/06/drive-42/sweep-01.pcd"),
    (SEVERAL, "thumbs/2024/06/drive-0042/frame-000123.jpg"),
    (SEVERAL, "other/drive-0042/frame-000123-labels.json"),
]


def per_match(pattern: re.Pattern[str], key: str) -> float:
    return min(timeit.repeat(lambda: pattern.match(key), number=5000, repeat=7)) / 5000


def test_ordinary_globs_cost_what_they_cost_before() -> None:
    for globs, key in ORDINARY:
        new, old = compile_globs(globs), reference_globs(globs)
        assert (new.match(key) is None) is (old.match(key) is None)
        assert per_match(new, key) < 2 * per_match(old, key) + 1e-7, globs
