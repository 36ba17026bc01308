"""Batch planning: pure logic, no model."""

import numpy as np
import pytest

from embedrt.batching import BatchPlan, padding_efficiency, plan_batches
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
    # the third batch is 2 long + 2 short rows at width 100; short rows then fill 16 a batch
    assert [len(b) for b in plan_batches(lengths, plan)][:4] == [4, 4, 4, 16]


def test_row_longer_than_budget_gets_its_own_batch():
    batches = plan_batches(np.array([5, 1000, 5]), BatchPlan(max_tokens=100, max_rows=8))
    assert [b.tolist() for b in batches] == [[1], [0, 2]]


def test_pad_multiple_rounds_width_up():
    plan = BatchPlan(max_tokens=64, max_rows=100, pad_multiple=8)
    assert plan.padded(9) == 16 and plan.padded(16) == 16 and plan.padded(1) == 8
    batches = plan_batches(np.array([9] * 10), plan)
    assert [len(b) for b in batches] == [4, 4, 2]  # 64 // 16


def test_equal_lengths_keep_input_order():
    batches = plan_batches(np.array([3, 3, 3, 3]), BatchPlan(max_tokens=100, max_rows=2))
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3]]


def test_empty_plan():
    assert plan_batches(np.array([], dtype=np.int64), BatchPlan()) == []


@pytest.mark.parametrize("field", ["max_tokens", "max_rows", "pad_multiple"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True, "8"])
def test_bad_plan_values_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        BatchPlan(**{field: value})


def test_padding_efficiency_sorted_beats_unsorted():
    lengths = np.array([2, 200, 3, 180, 4, 190, 5, 170])
    plan = BatchPlan(max_tokens=10_000, max_rows=2)
    sorted_eff = padding_efficiency(lengths, plan_batches(lengths, plan), plan)
    unsorted = [np.array([i, i + 1]) for i in range(0, 8, 2)]
    assert sorted_eff > 0.9 > padding_efficiency(lengths, unsorted, plan)
    assert padding_efficiency(np.array([7, 7]), [np.array([0, 1])], plan) == 1.0
