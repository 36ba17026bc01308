"""The label orientation check: fires on inverted labels, not on correct ones, not on noise."""

import numpy as np
import pytest
from conftest import build_st_model
from fixtures.toy_pairs import toy_rows

from embedrt.export.train.evaluation import EvalSet
from embedrt.export.train.orientation import LabelOrientationError, judge_orientation
from embedrt.export.train.pairs import make_pairs
from embedrt.export.train.recipe import Recipe
from embedrt.export.train.trainer import train_model


def toy_pairs(inverted=False):
    rows = toy_rows(inverted)
    return make_pairs(
        [r["sentence_0"] for r in rows],
        [r["sentence_1"] for r in rows],
        [r["label"] for r in rows],
        {"source": "toy"},
        "toy",
    )


def test_verdicts_on_numbers():
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 1, 500)
    cos = labels + rng.normal(0, 0.5, 500)
    assert judge_orientation(cos, labels).verdict == "similarity"
    inverted = judge_orientation(cos, 1 - labels)
    assert inverted.verdict == "distance" and inverted.spearman < -0.3 and inverted.pvalue < 1e-6
    assert judge_orientation(rng.uniform(0, 1, 500), labels).verdict != "distance"  # noise


def test_few_pairs_or_constant_labels_never_stop_training():
    # Perfectly inverted but only 4 pairs: p = 1/24, not "clearly".
    assert (
        judge_orientation(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.0, 0.3, 0.6, 1.0])).verdict
        == "unclear"
    )
    o = judge_orientation(np.array([0.9, 0.8, 0.7]), np.array([1.0, 1.0, 1.0]))
    assert o.verdict == "unclear" and np.isnan(o.spearman) and o.as_dict()["spearman"] is None
    with pytest.raises(ValueError, match="equal-length"):
        judge_orientation(np.zeros(3), np.zeros(4))


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return build_st_model(tmp_path_factory.mktemp("orient") / "base", seed=1)


def _train(base, out, pairs, labels):
    toy = EvalSet("toy", pairs.sentence_0[:20], pairs.sentence_1[:20], pairs.labels[:20])
    return train_model(
        pairs,
        out,
        Recipe(base=str(base), max_steps=2),
        labels=labels,
        eval_sets=[toy],
        log=lambda _: None,
    )


def test_inverted_labels_stop_training_with_the_way_out(tmp_path, tiny_base):
    with pytest.raises(LabelOrientationError) as e:
        _train(tiny_base, tmp_path / "out", toy_pairs(inverted=True), "auto")
    msg = str(e.value)
    assert "look inverted" in msg and "Spearman -0." in msg and "100 training pairs" in msg
    assert "--labels distance" in msg and "--labels similarity" in msg and "class ids" in msg
    assert not (tmp_path / "out").exists(), "nothing is written when training stops"


def test_correct_labels_pass(tmp_path, tiny_base):
    report = _train(tiny_base, tmp_path / "out", toy_pairs(), "auto")
    o = report.record["orientation"]
    assert o["verdict"] == "similarity" and o["spearman"] > 0.2
    assert report.record["training"]["steps"] == 2


def test_ways_out(tmp_path, tiny_base):
    # --labels distance: the inverted labels are flipped back, so the check passes.
    report = _train(tiny_base, tmp_path / "d", toy_pairs(inverted=True), "distance")
    assert report.record["orientation"]["verdict"] == "similarity"
    assert report.record["labels_read_as"] == "distance"
    # --labels similarity: trains on them as given, and the record says they looked inverted.
    report = _train(tiny_base, tmp_path / "s", toy_pairs(inverted=True), "similarity")
    assert report.record["orientation"]["verdict"] == "distance"
    assert "verdict **distance**" in (tmp_path / "s" / "README.md").read_text()
