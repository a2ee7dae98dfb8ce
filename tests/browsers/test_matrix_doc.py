"""docs/browsers.md shows the matrix the suite pins: its generated tables are exactly what
``EXPECTED`` renders (test_matrix.py asserts every measured cell against ``EXPECTED``), and the
command that writes them refuses a partial run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browsers.matrix import BROWSERS, END, START, expected_cells, render, rewrite, tables_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "browsers.md"


def test_the_docs_show_the_pinned_matrix() -> None:
    pinned = render({browser: expected_cells(browser) for browser in BROWSERS}, {})
    assert tables_of(DOC.read_text()) == tables_of(pinned), (
        "docs/browsers.md and tests/browsers/matrix.py EXPECTED disagree: run scripts/browser-matrix")


def test_the_command_rewrites_only_its_part_and_refuses_a_partial_run(tmp_path: Path) -> None:
    doc = tmp_path / "browsers.md"
    doc.write_text(f"# Title\n\nbefore\n\n{START}\nold\n{END}\n\nafter\n")
    report = tmp_path / "run.jsonl"
    lines = [json.dumps({"browser": browser, "version": f"{browser}/1", "dataset": name, "cells": cells})
             for browser in BROWSERS for name, cells in expected_cells(browser).items()]
    report.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(SystemExit, match="lacks 1 rows"):
        rewrite(doc, report)
    assert "old" in doc.read_text()
    report.write_text("\n".join(lines) + "\n")
    rewrite(doc, report)
    text = doc.read_text()
    assert text.startswith("# Title\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "old" not in text
    assert "chromium/1" in text and tables_of(text) == tables_of(DOC.read_text())
