"""Targets, the quick-mode regression guard, and the Markdown report, from the rows of one run."""

from __future__ import annotations

from typing import Any

# The targets (full mode; 2 workers, 64 connections, same run).
HOT_VS_STARLETTE = 0.60
USERS_VS_STARLETTE = 0.60
P99_MS = 25.0  # hot, users and hmac
HOT_VS_NAIVE = 5.0
COLD_VS_STARLETTE = 0.40
AUTO_IMG_VS_USERS = 0.95  # within the noise of a shared machine: the auto check is one header lookup
BATCH_MEDIAN_MS = 25.0
SOAK_RSS_GROWTH_PCT = 5.0
PROXY_VS_NGINX = 0.30
PROXY_SLOW_PEAK_RSS_MB = 200.0

# The quick guard: only gross regressions, only as ratios to bare Starlette measured in the same run.
GUARD_HOT_VS_STARLETTE = 0.25
GUARD_USERS_VS_STARLETTE = 0.25
GUARD_COLD_VS_STARLETTE = 0.10
GUARD_FRESH_VS_STARLETTE = 0.03
# A 1000-key batch may take at most this many "Starlette requests" of time (median batch seconds x
# Starlette's req/s): a machine-independent unit, since both scale with the machine's speed.
GUARD_BATCH_STARLETTE_REQUESTS = 2500.0


def _by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows if row["status"] == "ok"}


def _rps(row: dict[str, Any] | None) -> float | None:
    return row["wrk"]["rps"] if row and row.get("wrk") else None


def _base(named: dict[str, dict[str, Any]]) -> float | None:
    """The framework limit: bare Starlette's req/s, the better of its runs at the start and (full
    mode) at the end of the run. On a shared machine one slow run would flatter every ratio."""
    runs = [rps for rps in (_rps(named.get("starlette")), _rps(named.get("starlette-end"))) if rps]
    return max(runs) if runs else None


def _ratio(row: dict[str, Any] | None, base: float | None) -> float | None:
    rps = _rps(row)
    return rps / base if rps and base else None


def _p99(row: dict[str, Any] | None) -> float | None:
    return float(row["wrk"]["p99_ms"]) if row and row.get("wrk") else None


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    named = _by_name(rows)
    base, naive = _base(named), _rps(named.get("naive"))
    for row in rows:
        rps = _rps(row) if row["status"] == "ok" else None
        row["ratio_to_starlette"] = round(rps / base, 3) if rps and base else None
        row["ratio_to_naive"] = round(rps / naive, 2) if rps and naive else None
    return rows


def _target(name: str, value: float | None, op: str, threshold: float, unit: str = "",
            why_missing: str = "not measured in this run") -> dict[str, Any]:
    if value is None:
        return {"name": name, "value": None, "op": op, "threshold": threshold, "unit": unit, "pass": None,
                "note": why_missing}
    ok = value >= threshold if op == ">=" else value <= threshold if op == "<=" else value < threshold
    return {"name": name, "value": round(value, 3), "op": op, "threshold": threshold, "unit": unit, "pass": ok}


def error_total(rows: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Unexpected non-2xx/3xx answers and socket errors, plus failed batch requests, over every scenario
    (the load-shedding run answers 503 on purpose and is left out)."""
    total, where = 0, []
    for row in rows:
        if row["status"] != "ok" or row.get("expect_errors"):
            continue
        count = 0
        if row.get("wrk"):
            count += row["wrk"]["non_2xx_3xx"] + row["wrk"]["socket_errors"]
        count += row.get("extra", {}).get("failures", 0)
        if count:
            where.append(f"{row['name']}: {count}")
        total += count
    return total, where


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    named = _by_name(rows)
    base, naive = _base(named), _rps(named.get("naive"))
    hot, cold, users, hmac = named.get("hot"), named.get("cold"), named.get("users"), named.get("hmac")
    batch, auto_img = named.get("batch-cold"), named.get("auto-img")
    soak = named.get("soak")
    growth = None
    if soak:
        values = [g for g in soak["extra"].get("rss_growth_pct", []) if g is not None]
        growth = max(values) if values else None
    errors, where = error_total(rows)
    proxy, nginx_proxy, slow = named.get("proxy"), named.get("proxy-nginx"), named.get("proxy-slow")
    slow_peak = max(slow["peak_rss_kb"]) / 1024 if slow and slow.get("peak_rss_kb") else None
    result = [
        _target("users req/s >= 60% of bare Starlette", _ratio(users, base), ">=", USERS_VS_STARLETTE, "x"),
        _target("users p99 <= 25 ms", _p99(users), "<=", P99_MS, "ms"),
        _target("hot req/s >= 60% of bare Starlette", _ratio(hot, base), ">=", HOT_VS_STARLETTE, "x"),
        _target("hot p99 <= 25 ms", _p99(hot), "<=", P99_MS, "ms"),
        _target("hot req/s >= 5x naive gateway", _rps(hot) / naive if hot and naive else None, ">=",
                HOT_VS_NAIVE, "x"),
        _target("cold (S3) req/s >= 40% of bare Starlette", _ratio(cold, base), ">=", COLD_VS_STARLETTE, "x"),
        _target("delivery: auto costs <img> loads nothing: auto-img req/s >= 95% of users",
                _rps(auto_img) / _rps(users) if _rps(auto_img) and _rps(users) else None, ">=", AUTO_IMG_VS_USERS, "x"),
        _target("hmac p99 <= 25 ms at 64 connections", _p99(hmac), "<=", P99_MS, "ms"),
        _target("batch of 1000 new S3 keys: median <= 25 ms", batch["extra"]["median_ms"] if batch else None,
                "<=", BATCH_MEDIAN_MS, "ms"),
        _target("soak: RSS growth per worker < 5%", growth, "<", SOAK_RSS_GROWTH_PCT, "%",
                why_missing="no soak in this run (full mode only)"),
        _target("proxy (256 KB objects) req/s >= 30% of nginx proxy_pass", _rps(proxy) / _rps(nginx_proxy)
                if _rps(proxy) and _rps(nginx_proxy) else None, ">=", PROXY_VS_NGINX, "x"),
        _target("64 slow readers of a 50 MB object: peak RSS per worker < 200 MB", slow_peak, "<",
                PROXY_SLOW_PEAK_RSS_MB, "MB"),
        _target("zero non-2xx/3xx and socket errors in all scenarios", float(errors), "<=", 0.0, "errors"),
    ]
    if where:
        result[-1]["note"] = "; ".join(where)
    return result


def quick_guard(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    named = _by_name(rows)
    base = _base(named)
    hot, cold, batch = named.get("hot"), named.get("cold"), named.get("batch-cold")
    users, fresh = named.get("users"), named.get("fresh-tokens")
    errors, where = error_total(rows)
    batch_units = batch["extra"]["median_ms"] / 1000 * base if batch and base else None
    guard = [
        _target("guard: hot >= 25% of Starlette req/s", _ratio(hot, base), ">=", GUARD_HOT_VS_STARLETTE, "x"),
        _target("guard: users >= 25% of Starlette req/s", _ratio(users, base), ">=", GUARD_USERS_VS_STARLETTE, "x"),
        _target("guard: cold >= 10% of Starlette req/s", _ratio(cold, base), ">=", GUARD_COLD_VS_STARLETTE, "x"),
        _target("guard: fresh-tokens >= 3% of Starlette req/s", _ratio(fresh, base), ">=",
                GUARD_FRESH_VS_STARLETTE, "x"),
        _target("guard: batch median <= 2500 Starlette-request times", batch_units, "<=",
                GUARD_BATCH_STARLETTE_REQUESTS, "requests"),
        _target("guard: no errors in gateway scenarios", float(errors), "<=", 0.0, "errors"),
    ]
    if where:
        guard[-1]["note"] = "; ".join(where)
    for item in guard:  # a guard that could not be measured is a failure, not a pass
        if item["pass"] is None:
            item["pass"] = False
    return guard


def _mb(kb: list[int]) -> str:
    return " / ".join(f"{k / 1024:.0f}" for k in kb) if kb else ""


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown(result: dict[str, Any]) -> str:
    meta, rows = result["meta"], result["scenarios"]
    out = [
        f"# Gateway benchmark ({meta['mode']}, {meta['date']}, git {meta['git']})",
        "",
        f"{meta['workers']} workers per server, wrk -t{meta['wrk_threads']} -c{meta['connections']}, "
        f"{meta['seconds']:g} s per run after {meta['warmup']:g} s warm-up; {meta['cpus']} CPUs, "
        f"load average at the end {', '.join(f'{x:.2f}' for x in meta['loadavg_at_end'])}.",
        "",
        "| scenario | server | req/s | p50 ms | p99 ms | non-2xx/3xx | socket errors | peak RSS/worker MB "
        "| CPU µs/req | CPU split % | x Starlette | x naive | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in rows:
        if row["group"] == "batch":
            continue
        w = row.get("wrk")
        if row["status"] == "skipped" or (not w and row["status"] != "ok"):
            out.append(f"| {row['name']} | {row['server']} | | | | | | | | | | | {row['status']}: {row['reason']} |")
            continue
        if not w:  # measured without wrk (the slow readers): what they received, and the peak RSS
            extra = row.get("extra", {})
            got = (f"{extra['mb_received']} MB to {extra['readers_that_got_data']} of {extra['connections']} readers "
                   f"in {extra['seconds']:g} s" if "mb_received" in extra else "")
            out.append(f"| {row['name']} | {row['server']} | | | | | | {_mb(row['peak_rss_kb'])} | | | | | {got} |")
            continue
        notes = []
        if row["status"] != "ok":
            notes.append(f"{row['status']}: {row['reason']}")
        extra = row.get("extra", {})
        if "audit_records_per_request" in extra:
            notes.append(f"audit {extra['audit_records_per_request']:.2f}/req")
        if "shed_share" in extra and extra.get("max_concurrency"):
            share = 100 * extra["shed_share"]
            notes.append(f"limit {extra['max_concurrency']}: {share:.1f}% shed with 503 (by design)")
        if "rss_growth_pct" in extra:
            notes.append(f"RSS growth {extra['rss_growth_pct']} %")
        if row.get("peak_rss_cumulative"):
            notes.append("peak RSS since start")
        out.append(
            f"| {row['name']} | {row['server']} | {w['rps']:,.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} "
            f"| {w['non_2xx_3xx']} | {w['socket_errors']} | {_mb(row['peak_rss_kb'])} "
            f"| {_fmt(extra.get('cpu_us_per_request'), '.0f')} | {'/'.join(str(c) for c in row.get('cpu_split', []))} "
            f"| {_fmt(row.get('ratio_to_starlette'), '.2f')} "
            f"| {_fmt(row.get('ratio_to_naive'), '.2f')} | {'; '.join(notes)} |")
    batches = [r for r in rows if r["group"] == "batch"]
    if batches:
        out += ["", "| batch (POST /v1/sign, 1000 keys, sequential, keep-alive) | median ms | p90 ms | min ms "
                "| requests | failures |", "|---|---:|---:|---:|---:|---:|"]
        for row in batches:
            e = row["extra"]
            out.append(f"| {row['name']} | {e['median_ms']:.2f} | {e['p90_ms']:.2f} | {e['min_ms']:.2f} "
                       f"| {e['requests']} | {e['failures']} |")

    def checks(title: str, items: list[dict[str, Any]]) -> None:
        nonlocal out
        out += ["", f"## {title}", ""]
        for t in items:
            verdict = "PASS" if t["pass"] else "FAIL" if t["pass"] is False else "N/A "
            value = "not measured" if t["value"] is None else f"{t['value']:g} {t['unit']}"
            note = f" ({t['note']})" if t.get("note") else ""
            out.append(f"- **{verdict}** {t['name']}: {value} (needs {t['op']} {t['threshold']:g}){note}")

    if meta["mode"] == "full":
        checks("Targets", result["targets"])
    checks("Quick regression guard (ratios to Starlette in the same run)", result["quick_guard"])
    if meta.get("notes"):
        out += ["", "Notes: " + "; ".join(meta["notes"])]
    return "\n".join(out) + "\n"
