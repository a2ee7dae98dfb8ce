"""The access report as one self-contained HTML page: inline CSS, charts in inline SVG, no script.

Object keys, user agents, principals and reasons are text that callers chose, so every piece of text
goes through :func:`html.escape` (quotes too), ids are numbers and never names, and the page's own
Content-Security-Policy forbids scripts and every external fetch, should something slip through.
"""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#1d2329;
padding:0 1rem}
h1{font-size:1.5rem;margin:.5rem 0}h2{border-bottom:2px solid #d0d7de;padding-bottom:.2rem;margin-top:2.5rem}
h3{font-size:1rem;margin:1.4rem 0 .4rem}
.chain{padding:.6rem .9rem;border-radius:6px;font-weight:600}.ok{background:#dafbe1;color:#116329}
.bad{background:#ffebe9;color:#a40e26}.chain ul{font-weight:400;margin:.3rem 0 0}
table{border-collapse:collapse;margin:.3rem 0}td,th{padding:.2rem .6rem;border-bottom:1px solid #eaeef2;
text-align:left;vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.d{white-space:nowrap}.key{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 .8em}
td.k{font-family:ui-monospace,monospace;word-break:break-all;max-width:48rem}.meta{color:#57606a}
svg text{font:11px system-ui,sans-serif;fill:#57606a}.more{color:#57606a;font-style:italic}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
ALLOWED, DENIED = "#2f81f7", "#cf222e"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{count} B"  # pragma: no cover


def _chain(chain: dict[str, Any]) -> str:
    if chain["ok"]:
        head = (f'<div class="chain ok" id="chain">Chain intact: {chain["records"]:,} records in '
                f'{chain["chains"]:,} chain(s) verified before this report.')
    else:
        head = (f'<div class="chain bad" id="chain">Chain broken: {chain["problem_count"]:,} problem(s) in '
                f'{chain["records"]:,} records; the report below still counts every record read.')
    items = [f"<li>{_e(text)}</li>" for text in chain["problems"]] + [f"<li>{_e(n)}</li>" for n in chain["notes"]]
    return head + (f"<ul>{''.join(items)}</ul>" if items else "") + "</div>"


def _table(header: list[str], rows: list[list[tuple[str, object]]], more: str = "") -> str:
    """rows of (css class, value): class ``n`` for numbers, ``k`` for keys and other free text."""
    head = "".join(f'<th class="{"n" if i and rows and rows[0][i][0] == "n" else ""}">{_e(h)}</th>'
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{cls}">{_e(value)}</td>' for cls, value in row) + "</tr>"
                   for row in rows)
    extra = f'<p class="more">{_e(more)}</p>' if more else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{extra}"


def days_chart(days: list[dict[str, Any]], width: int = 760, height: int = 170) -> str:
    """Requests per day as stacked bars (allowed under denied), one bar per day in the data."""
    if not days:
        return '<p class="more">no requests</p>'
    left, bottom, top = 44, 22, 8
    plot_w, plot_h = width - left - 6, height - bottom - top
    peak = max(d["allowed"] + d["denied"] for d in days) or 1
    step = plot_w / len(days)
    bar = max(step * 0.8, 0.5)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="requests per day">',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 6}" y2="{top + plot_h}" stroke="#d0d7de"/>',
             f'<text x="{left - 4}" y="{top + 9}" text-anchor="end">{peak:,}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>']
    for i, day in enumerate(days):
        x = left + i * step
        a_h = plot_h * day["allowed"] / peak
        d_h = plot_h * day["denied"] / peak
        tip = f'{day["day"]}: {day["allowed"]:,} allowed, {day["denied"]:,} denied'
        parts.append(f'<g><title>{_e(tip)}</title>'
                     f'<rect x="{x:.2f}" y="{top + plot_h - a_h:.2f}" width="{bar:.2f}" height="{a_h:.2f}" '
                     f'fill="{ALLOWED}"/>'
                     f'<rect x="{x:.2f}" y="{top + plot_h - a_h - d_h:.2f}" width="{bar:.2f}" height="{d_h:.2f}" '
                     f'fill="{DENIED}"/></g>')
    parts.append(f'<text x="{left}" y="{height - 6}">{_e(days[0]["day"])}</text>')
    if len(days) > 1:
        parts.append(f'<text x="{width - 6}" y="{height - 6}" text-anchor="end">{_e(days[-1]["day"])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars_chart(items: list[tuple[str, int]], width: int = 760) -> str:
    """Horizontal bars with their labels (refusal reasons)."""
    if not items:
        return '<p class="more">none</p>'
    row, label_w = 20, 220
    peak = max(count for _, count in items) or 1
    height = row * len(items) + 4
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="refusals by reason">']
    for i, (label, count) in enumerate(items):
        y = i * row + 2
        w = (width - label_w - 80) * count / peak
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_e(label[:40])}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{w:.2f}" height="{row - 6}" fill="{DENIED}">'
                     f'<title>{_e(label)}: {count:,}</title></rect>'
                     f'<text x="{label_w + w + 6:.2f}" y="{y + 13}">{count:,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _dataset(index: int, ds: dict[str, Any]) -> str:
    objects = f"{ds['objects']:,}" + ("" if ds["objects_complete"] else "+ (only the first keys seen are tracked)")
    summary = _table(["", ""], [[("", name), ("n", value)] for name, value in (
        ("requests", f"{ds['requests']:,}"), ("allowed", f"{ds['allowed']:,}"), ("denied", f"{ds['denied']:,}"),
        ("objects read (distinct)", objects), ("reads (URLs issued or objects sent)", f"{ds['reads']:,}"),
        ("bytes sent by the gateway", size(ds["bytes"])), ("first seen", ds["first_seen"] or "-"),
        ("last seen", ds["last_seen"] or "-"))])
    left = ds["principals_not_shown"]
    principals = _table(
        ["principal", "requests", "allowed", "denied", "reads", "bytes", "first seen", "last seen"],
        [[("k", p["principal"]), ("n", f"{p['requests']:,}"), ("n", f"{p['allowed']:,}"), ("n", f"{p['denied']:,}"),
          ("n", f"{p['reads']:,}"), ("n", size(p["bytes"])), ("d", p["first_seen"]), ("d", p["last_seen"])]
         for p in ds["principals"]],
        f"and {left['principals']:,} more principal(s), plus {left['requests']:,} request(s) past the report's "
        f"budget" if left["principals"] or left["requests"] else "")
    untracked = ds["objects_not_tracked"]
    objects_table = _table(
        ["key", "reads", "bytes"],
        [[("k", o["key"]), ("n", f"{o['reads']:,}"), ("n", size(o["bytes"]))] for o in ds["top_objects"]],
        f"{untracked['reads']:,} read(s) of keys past the report's budget ({size(untracked['bytes'])})"
        if untracked["reads"] else "")
    agents = _table(["user agent", "requests"],
                    [[("k", a["user_agent"] or "(none)"), ("n", f"{a['requests']:,}")] for a in ds["user_agents"]])
    refusals = bars_chart([(r["reason"], r["count"]) for r in ds["refusals"]])
    return (f'<section id="dataset-{index}"><h2>{_e(ds["dataset"])}</h2>{summary}'
            f'<h3>Requests per day (UTC)<span class="key" style="background:{ALLOWED}"></span>allowed'
            f'<span class="key" style="background:{DENIED}"></span>denied</h3>{days_chart(ds["days"])}'
            f"<h3>Refusals by reason</h3>{refusals}<h3>Principals</h3>{principals}"
            f"<h3>Objects read, most read first</h3>{objects_table}<h3>User agents</h3>{agents}</section>")


def render_html(summary: dict[str, Any]) -> str:
    period, records, filters = summary["period"], summary["records"], summary["filters"]
    scope = [f"from {period['since'] or 'the first record'} to {period['until'] or 'the last record'}"]
    if filters["datasets"]:
        scope.append("datasets " + ", ".join(filters["datasets"]))
    if filters["principal"]:
        scope.append(f"principal {filters['principal']}")
    toc = "".join(f'<li><a href="#dataset-{i}">{_e(ds["dataset"])}</a> ({ds["requests"]:,})</li>'
                  for i, ds in enumerate(summary["datasets"]))
    sections = "".join(_dataset(i, ds) for i, ds in enumerate(summary["datasets"]))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>Access report</title><style>{STYLE}</style></head><body>\n"
            f"{_chain(summary['chain'])}\n<h1>Access report</h1>"
            f'<p class="meta">{_e("; ".join(scope))}. Sources: {_e(", ".join(summary["sources"]))}. '
            f"{records['read']:,} records read, {records['in_report']:,} in this report. "
            f"Generated {_e(summary['generated'])}.</p>"
            f"<ul>{toc}</ul>{sections or '<p>No record matches.</p>'}</body></html>\n")
