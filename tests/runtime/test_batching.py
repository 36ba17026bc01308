"""Batch planning: pure logic, no model."""

from itertools import pairwise

import numpy as np
import pytest

from embedrt.batching import BatchPlan, cut_sorted, padding_efficiency, plan_batches
from embedrt.errors import ConfigError


def test_every_index_exactly_once_longest_first():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 257, size=1000)
    batches = plan_batches(lengths, BatchPlan(max_tokens=4096, max_rows=64))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    firsts = [int(lengths[b[0]]) for b in batches]
    assert firsts == sorted(firsts, reverse=True)
    for b in batches:  # the first row is the batch's longest
        assert lengths[b[0]] == lengths[b].max()


def test_token_budget_and_row_cap_respected():
    lengths = np.array([100] * 10 + [10] * 100)
    plan = BatchPlan(max_tokens=400, max_rows=16)
    for b in plan_batches(lengths, plan):
        assert len(b) <= 16
        assert len(b) * lengths[b].max() <= 400
    # long rows at most 4 a batch (budget), never padding short rows to 100; 16 short a batch
    batches = plan_batches(lengths, plan)
    assert all(len(set(lengths[b].tolist())) == 1 for b in batches)
    assert len(batches) == 3 + 7


def brute_force_cost(lengths, plan):
    """The cheapest cut of sorted rows into batches, by trying every composition (small n only)."""
    n = len(lengths)
    best = float("inf")
    for mask in range(1 << (n - 1)):
        cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
        runs = list(pairwise(cuts))
        if any(
            e - s > plan.max_rows
            or (e - s > 1 and (e - s) * lengths[s] > plan.max_tokens)
            or (e - s > 1 and (e - s) * lengths[s] ** 2 > plan.max_cells)
            for s, e in runs
        ):
            continue
        best = min(best, sum(plan.run_cost + (e - s) * lengths[s] for s, e in runs))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_cuts_cover_every_row_within_limits_at_least_cost(seed):
    rng = np.random.default_rng(seed)
    lengths = np.sort(rng.integers(2, 60, size=int(rng.integers(1, 11))))[::-1]
    plan = BatchPlan(
        max_tokens=150, max_rows=4, run_cost=int(rng.choice([0, 8, 32, 1000])), max_cells=4000
    )
    runs = cut_sorted(lengths, plan)
    assert runs[0][0] == 0 and runs[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in pairwise(runs))
    assert all(
        0 < e - s <= 4
        and ((e - s) * lengths[s] <= 150 and (e - s) * lengths[s] ** 2 <= 4000 or e - s == 1)
        for s, e in runs
    )
    cost = sum(plan.run_cost + (e - s) * lengths[s] for s, e in runs)
    assert cost == brute_force_cost(lengths, plan)


def test_cuts_trade_padding_against_run_cost():
    lengths = np.array([40, 40, 10, 10, 10, 10])
    assert cut_sorted(lengths, BatchPlan(max_tokens=10_000, run_cost=8)) == [(0, 2), (2, 6)]
    assert cut_sorted(lengths, BatchPlan(max_tokens=10_000, run_cost=1000)) == [(0, 6)]


def test_long_tail_is_not_padded_to_its_longest_row():
    lengths = np.array([256] + [20] * 59)  # a small long-tail input
    plan = BatchPlan()
    batches = plan_batches(lengths, plan)
    assert [b.tolist() for b in batches][0] == [0]
    assert padding_efficiency(lengths, batches, plan) > 0.95


def test_attention_area_bounds_long_batches_not_short_ones():
    """The default plan: 32 rows up to 64 tokens, then rows x length^2 <= 8 x 128^2."""
    plan = BatchPlan()
    widths = (16, 64, 65, 128, 256, 257, 512, 4096)
    assert [plan.most_rows(w) for w in widths] == [32, 32, 31, 8, 2, 1, 1, 1]
    batches = plan_batches(np.array([256] * 20 + [30] * 40), plan)
    assert sorted(len(b) for b in batches) == [2] * 10 + [8, 32]  # 20 long rows: 10 runs
    assert BatchPlan(max_cells=None).most_rows(256) == 32  # GPUs: the token budget alone


def test_row_longer_than_budget_gets_its_own_batch():
    batches = plan_batches(np.array([5, 1000, 5]), BatchPlan(max_tokens=100, max_rows=8))
    assert [b.tolist() for b in batches] == [[1], [0, 2]]


def test_pad_multiple_rounds_width_up():
    plan = BatchPlan(max_tokens=64, max_rows=100, pad_multiple=8, run_cost=1000)
    assert plan.padded(9) == 16 and plan.padded(16) == 16 and plan.padded(1) == 8
    batches = plan_batches(np.array([9] * 10), plan)
    assert sorted(len(b) for b in batches) == [2, 4, 4]  # at most 64 // 16 rows


def test_equal_lengths_keep_input_order():
    batches = plan_batches(
        np.array([3, 3, 3, 3]), BatchPlan(max_tokens=100, max_rows=2, run_cost=1)
    )
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3]]


def test_empty_plan():
    assert plan_batches(np.array([], dtype=np.int64), BatchPlan()) == []


@pytest.mark.parametrize("field", ["max_tokens", "max_rows", "pad_multiple", "run_cost"])
@pytest.mark.parametrize("value", [-1, 2.5, True, "8"])
def test_bad_plan_values_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        BatchPlan(**{field: value})
    if field != "run_cost":
        with pytest.raises(ConfigError, match=field):
            BatchPlan(**{field: 0})


def test_padding_efficiency_sorted_beats_unsorted():
    lengths = np.array([2, 200, 3, 180, 4, 190, 5, 170])
    plan = BatchPlan(max_tokens=10_000, max_rows=2)
    sorted_eff = padding_efficiency(lengths, plan_batches(lengths, plan), plan)
    unsorted = [np.array([i, i + 1]) for i in range(0, 8, 2)]
    assert sorted_eff > 0.9 > padding_efficiency(lengths, unsorted, plan)
    assert padding_efficiency(np.array([7, 7]), [np.array([0, 1])], plan) == 1.0


def test_a_cpu_run_holds_the_widest_activation_to_its_budget():
    from embedrt.batching import CPU_ACTIVATION_FLOATS, CPU_MIN_RUN_TOKENS, cpu_run_tokens

    assert cpu_run_tokens(16384, None) == 16384  # an artifact that does not say: as asked
    assert cpu_run_tokens(16384, 1536) == 1024  # MiniLM's feed-forward
    assert cpu_run_tokens(16384, 3072) == 512  # MPNet's
    assert cpu_run_tokens(300, 3072) == 300  # a smaller batch_tokens still rules
    assert cpu_run_tokens(16384, 16) == 16384  # a narrow graph: the budget
    assert cpu_run_tokens(16384, 1 << 16) == CPU_MIN_RUN_TOKENS  # a huge width: still 256 rows
    for width in (384, 1000, 3072, 4096):
        tokens = cpu_run_tokens(1 << 20, width)
        assert tokens * width <= max(CPU_ACTIVATION_FLOATS, CPU_MIN_RUN_TOKENS * width)
