"""A small reader of the fenced blocks of the README and docs/*.md, and of the marker that says how
each shell or YAML block is checked.

Why not a plugin (pytest-codeblocks, pytest-examples, mktestdocs, pytest-markdown-docs): they run a
block as it stands (Python, or ``bash -c``) and compare its whole output exactly. These blocks need a
real gateway started with the settings the text around them describes, the documented port mapped to
a free one, outputs with parts that change on every run (signatures, expiry times, request ids), and
YAML checked as what it is (a policy, Helm values, an excerpt of a shipped file). What a plugin would
add is the fence parsing below; the checks are ours either way.

The marker is an HTML comment (invisible on GitHub) on the line before the fence::

    <!-- doc-test: MODE [ARG ...] [key=value ...] -->

MODEs and what each checks (tests/docs/test_blocks.py, tests/docs/test_not_here.py):

- ``serve [ARGS]``: a real ``gateway serve ARGS`` (``NAME=value`` words set its environment) on a free
  port; the block runs in bash with every ``127.0.0.1:8080`` mapped to it, and each ``curl`` line's
  comment that shows an answer (``# 302, Location: http://...``, ``# 400 invalid_key``,
  ``# {"url", "expires_at"}``) is checked against the answer.
- ``run``: the block runs in bash, in the same sandbox, and must succeed.
- ``save as=FILE``: the block's text becomes FILE in the sandbox, for later blocks of the same page.
- ``policy [as=FILE]``, ``policy-part``, ``backend``: a whole policy, top-level sections of one, or a
  dataset's ``backend``: ``gateway check-config`` must pass it.
- ``values``: Helm values, rendered by a real helm with the chart.
- ``excerpt of=PATH``: YAML that must appear, as written, within the YAML file PATH.
- ``not-here reason="..." [checked-by=TEST_FILE]``: cannot run on a test machine (a cluster, a cloud,
  Docker, a browser trust store). Each command still gets what can be checked here: ``gateway``
  commands parse with the real CLI, ``helm`` renders, ``make`` targets exist (``make -n``), ``docker
  compose`` names real services. ``checked-by`` names a test that runs the block's requests another
  way and mentions the block's ``id=``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODES = {"serve", "run", "save", "policy", "policy-part", "backend", "values", "excerpt", "not-here"}
SHELL = {"sh", "bash", "shell"}
YAML = {"yaml", "yml"}
_MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    mode: str | None = None
    args: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"

    @property
    def checked(self) -> bool:
        return self.lang in SHELL | YAML


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _marker(line: str) -> tuple[str | None, tuple[str, ...], dict[str, str]]:
    match = _MARKER.match(line)
    if match is None:
        return None, (), {}
    words = shlex.split(match["body"])
    mode, args, options = (words[0] if words else ""), [], {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if sep and re.fullmatch(r"[a-z][a-z-]*", key):
            options[key] = value
        else:
            args.append(word)
    return mode, tuple(args), options


def read_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the marker on the line before it (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i, previous = [], 0, ""
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            line = lines[i]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            i += 1
        mode, args, options = _marker(previous)
        lang = (match["info"].split() or [""])[0].lower()
        blocks.append(Block(path, start, lang, "\n".join(body) + "\n", mode, args, options))
        i += 1
        previous = ""
    return blocks


def all_blocks() -> list[Block]:
    return [block for doc in documents() for block in read_blocks(doc)]


def block_by_id(doc: str, block_id: str) -> Block:
    """The block of ``doc`` whose marker says ``id=block_id``: how a test elsewhere finds its block."""
    found = [b for b in read_blocks(REPO / doc) if b.options.get("id") == block_id]
    assert len(found) == 1, f"{doc}: expected one block with id={block_id}, found {len(found)}"
    return found[0]


def logical_lines(text: str) -> list[str]:
    """Shell lines with their backslash continuations joined."""
    out, current = [], ""
    for line in text.splitlines():
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return [line for line in out if line.strip()]


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment) at the first ``#`` outside quotes that starts a word."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def commands(text: str) -> list[list[str]]:
    """The simple commands of a shell block, as words (``a && b | c`` is three commands), with
    leading ``NAME=value`` assignments dropped. Good enough for the docs' blocks, not for any shell."""
    out = []
    for line in logical_lines(text):
        command, _ = split_comment(line)
        if not command.strip():
            continue
        try:
            words = shlex.split(command, posix=True)
        except ValueError:
            continue  # an unbalanced quote spans lines (a here-string); the run modes cover those
        current: list[str] = []
        for word in [*words, "&&"]:
            if word in {"&&", "||", "|", ";", "&"}:
                while current and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", current[0]):
                    current.pop(0)
                if current:
                    out.append(current)
                current = []
            else:
                current.append(word)
    return out
