"""Packing a round's rows into inference runs (pure logic): coverage, limits, least cost."""

import numpy as np
import pytest

from embedrt import BatchPlan
from embedrt.packing import plan_runs


def brute_force_cost(lengths, plan, run_cost):
    """The cheapest cut of sorted rows into runs, by trying every composition (small n only)."""
    n = len(lengths)
    best = float("inf")
    for mask in range(1 << (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        runs = list(zip(cuts, cuts[1:]))
        if any(e - s > plan.max_rows or (e - s > 1 and (e - s) * lengths[s] > plan.max_tokens) for s, e in runs):
            continue
        best = min(best, sum(run_cost + (e - s) * lengths[s] for s, e in runs))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_plan_runs_covers_every_row_within_limits_at_least_cost(seed):
    rng = np.random.default_rng(seed)
    lengths = np.sort(rng.integers(2, 60, size=int(rng.integers(1, 11))))[::-1]
    plan = BatchPlan(max_tokens=150, max_rows=4)
    run_cost = int(rng.choice([0, 8, 32, 1000]))
    runs = plan_runs(lengths, plan, run_cost)
    assert runs[0][0] == 0 and runs[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))
    assert all(0 < e - s <= 4 and ((e - s) * lengths[s] <= 150 or e - s == 1) for s, e in runs)
    cost = sum(run_cost + (e - s) * lengths[s] for s, e in runs)
    assert cost == brute_force_cost(lengths, plan, run_cost)


def test_plan_runs_trades_padding_against_run_cost():
    lengths = np.array([40, 40, 10, 10, 10, 10])
    plan = BatchPlan(max_tokens=10_000, max_rows=32)
    assert plan_runs(lengths, plan, 8) == [(0, 2), (2, 6)]  # padding 4 rows by 30 costs more
    assert plan_runs(lengths, plan, 1000) == [(0, 6)]  # a run costs more than that padding
