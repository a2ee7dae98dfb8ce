"""The performance figures in the docs are the benchmark's (``bench/docs.py``), never typed."""

from __future__ import annotations

import copy
import json
import re

import pytest

from bench import docs as bench_docs
from tests.docs.blocks import documents


def test_the_docs_say_what_the_latest_results_say() -> None:
    results = bench_docs.load()
    stale = [str(doc) for doc in documents() if bench_docs.render(doc.read_text(), results) != doc.read_text()]
    assert not stale, f"performance figures differ from bench/results/latest.json: {stale}; run python -m bench.docs"


def test_every_section_is_quoted_somewhere() -> None:
    text = "".join(doc.read_text() for doc in documents())
    quoted = set(re.findall(r"<!-- bench:([a-z-]+) -->", text))
    assert quoted == set(bench_docs.SECTIONS)


def test_a_changed_result_changes_the_docs() -> None:
    """The comparison can fail: other results give other text in every section."""
    data = json.loads(bench_docs.RESULTS.read_text())
    changed = copy.deepcopy(data)
    for row in changed["scenarios"]:
        if row.get("wrk"):
            row["wrk"]["rps"] *= 1.5
            row["wrk"]["p99_ms"] *= 2
        if row.get("extra", {}).get("cpu_us_per_request"):
            row["extra"]["cpu_us_per_request"] *= 2
        if row.get("peak_rss_kb"):
            row["peak_rss_kb"] = [kb * 2 for kb in row["peak_rss_kb"]]
    for target in changed["targets"]:
        target["pass"] = not target["pass"]
    before, after = bench_docs.Results(data), bench_docs.Results(changed)
    for name, section in bench_docs.SECTIONS.items():
        assert section(before) != section(after), name


def test_an_unknown_section_is_an_error() -> None:
    with pytest.raises(KeyError, match="unknown bench section"):
        bench_docs.render("<!-- bench:nope -->\n<!-- /bench:nope -->", bench_docs.load())
