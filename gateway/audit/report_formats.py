"""The access report as CSV or JSON (the HTML page is in ``report_html``), and the one place that picks.

CSV is one table, one row per fact, so that a spreadsheet can filter it: the header, then the
chain's verdict (``section`` ``chain``: ``intact`` or ``broken``) and its problems, then per dataset
its totals, principals, objects, days, refusals and user agents. Text a caller chose (keys, user
agents) may start with ``=``, ``+``, ``-`` or ``@``, which a spreadsheet would run as a formula: such
cells are written with a leading ``'``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import orjson

from gateway.audit.report_html import render_html

COLUMNS = ["section", "dataset", "name", "requests", "allowed", "denied", "reads", "bytes", "first_seen",
           "last_seen", "detail"]
FORMATS = ("html", "csv", "json")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return "" if value is None else value


def _tally(section: str, dataset: str, name: str, row: dict[str, Any], detail: object = "") -> list[object]:
    return [section, dataset, name, row["requests"], row["allowed"], row["denied"], row["reads"], row["bytes"],
            row["first_seen"], row["last_seen"], detail]


def _rows(summary: dict[str, Any]) -> Iterator[list[object]]:
    chain = summary["chain"]
    verdict = "intact" if chain["ok"] else "broken"
    first = chain["problems"][0] if chain["problems"] else f"{chain['records']} records in {chain['chains']} chains"
    yield ["chain", "", verdict, chain["records"], "", "", "", "", "", "", first]
    for problem in chain["problems"][1:]:
        yield ["chain_problem", "", "", "", "", "", "", "", "", "", problem]
    for note in chain["notes"]:
        yield ["chain_note", "", "", "", "", "", "", "", "", "", note]
    for ds in summary["datasets"]:
        name = ds["dataset"]
        yield _tally("dataset", name, "", ds, f"{ds['objects']} distinct objects"
                     + ("" if ds["objects_complete"] else " or more"))
        for p in ds["principals"]:
            yield _tally("principal", name, p["principal"], p)
        others = ds["principals_not_shown"]
        if others["principals"] or others["requests"]:
            yield _tally("principal", name, "(others)", others, f"{others['principals']} principals not listed")
        for o in ds["top_objects"]:
            yield ["object", name, o["key"], "", "", "", o["reads"], o["bytes"], "", "", ""]
        untracked = ds["objects_not_tracked"]
        if untracked["reads"]:
            yield ["object", name, "(others)", "", "", "", untracked["reads"], untracked["bytes"], "", "",
                   "keys past the report's budget"]
        for d in ds["days"]:
            yield ["day", name, d["day"], d["allowed"] + d["denied"], d["allowed"], d["denied"], "", "", "", "", ""]
        for r in ds["refusals"]:
            yield ["refusal", name, r["reason"], r["count"], "", r["count"], "", "", "", "", ""]
        for a in ds["user_agents"]:
            yield ["user_agent", name, a["user_agent"], a["requests"], "", "", "", "", "", "", ""]


def render_csv(summary: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in _rows(summary):
        writer.writerow([_cell(value) for value in row])
    return out.getvalue()


def render_json(summary: dict[str, Any]) -> str:
    return orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n"


def render(summary: dict[str, Any], fmt: str) -> str:
    match fmt:
        case "csv":
            return render_csv(summary)
        case "json":
            return render_json(summary)
        case _:
            return render_html(summary)
