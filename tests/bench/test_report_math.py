"""The report's arithmetic: the soak row's RSS growth, and the Starlette baseline the ratios divide by."""

from __future__ import annotations

from typing import Any

from bench.report import with_ratios
from bench.rows_long import rss_growth


def test_growth_compares_the_medians_of_both_ends_per_worker() -> None:
    # Worker 0 grows steadily (a leak); worker 1 swings around a flat level.
    samples = [(10.0 * i, [100_000 + 2_000 * i, [130_000, 137_000, 131_000][i % 3]]) for i in range(12)]
    growth = rss_growth(samples, 2)
    assert growth[0] == round(100 * (120_000 - 102_000) / 102_000, 2)
    assert growth[1] == 0.0


def test_too_few_samples_give_no_number() -> None:
    assert rss_growth([(10.0, [1, 2]), (20.0, [1, 2])], 2) == [None, None]
    assert rss_growth([], 1) == [None]


def _row(name: str, rps: float) -> dict[str, Any]:
    return {"name": name, "status": "ok", "wrk": {"rps": rps}}


def test_ratios_divide_by_the_better_of_the_two_starlette_runs() -> None:
    rows = with_ratios([_row("starlette", 20_000), _row("naive", 1_000), _row("hot", 25_000),
                        _row("starlette-end", 40_000)])
    ratio = {row["name"]: row["ratio_to_starlette"] for row in rows}
    assert ratio["hot"] == 0.625  # 25k / 40k: a slow first baseline run flatters nothing
    assert ratio["starlette"] == 0.5
    assert with_ratios([_row("starlette", 20_000), _row("hot", 10_000)])[1]["ratio_to_starlette"] == 0.5
