"""The soak row's RSS growth: medians of the first and last samples taken under load."""

from __future__ import annotations

from bench.run import rss_growth


def test_growth_compares_the_medians_of_both_ends_per_worker() -> None:
    # Worker 0 grows steadily (a leak); worker 1 swings around a flat level.
    samples = [(10.0 * i, [100_000 + 2_000 * i, [130_000, 137_000, 131_000][i % 3]]) for i in range(12)]
    growth = rss_growth(samples, 2)
    assert growth[0] == round(100 * (120_000 - 102_000) / 102_000, 2)
    assert growth[1] == 0.0


def test_too_few_samples_give_no_number() -> None:
    assert rss_growth([(10.0, [1, 2]), (20.0, [1, 2])], 2) == [None, None]
    assert rss_growth([], 1) == [None]
