"""The model card's recipe for real: all-MiniLM-L6-v2, 1000 SNLI pairs, 63 steps, STS-B dev.

The card's class-id labels are refused by the orientation check; labels by meaning train and
keep the model good (STS-B dev Spearman stays near the base model's 0.867, where class-id labels
drop it to ~0.61), while the card's own metric on held-out pairs comes out negative. Fetches
SNLI into the default cache (~/.cache/embedrt) the first time: an explicit, checksummed step.
"""

import json

import pytest

from embedrt.export.train.orientation import LabelOrientationError
from embedrt.export.train.recipe import Recipe
from embedrt.export.train.snli import default_cache_dir, fetch_snli
from embedrt.export.train.trainer import train_model, training_data


@pytest.fixture(scope="module")
def cache():
    fetch_snli(default_cache_dir())
    return default_cache_dir()


def test_card_labels_are_refused(tmp_path, cache):
    pairs, evals = training_data("snli", cache, snli_labels="class-id", heldout=0)
    assert pairs.labels.count(0.0) > 250 and pairs.provenance["label_map"]["entailment"] == 0.0
    with pytest.raises(LabelOrientationError, match=r"1000 training pairs.*Spearman -0\.[3-7]"):
        train_model(pairs, tmp_path / "ft", eval_sets=evals)
    assert not (tmp_path / "ft").exists()


def test_recipe_with_meaning_labels(tmp_path, cache):
    pairs, evals = training_data("snli", cache)
    report = train_model(pairs, tmp_path / "ft", Recipe(), eval_sets=evals)
    r = report.record
    assert r["training"]["steps"] == 63  # 1000 pairs / batch 16, one epoch
    assert r["orientation"]["verdict"] == "similarity" and r["orientation"]["spearman"] > 0.3
    before, after = r["metrics"]["before"], r["metrics"]["after"]
    assert before["sts-b dev"]["spearman"] == pytest.approx(0.867, abs=0.005)  # the base model
    assert after["sts-b dev"]["spearman"] > 0.83  # training on correct labels keeps it good
    # The card's metric (held-out pairs, class-id labels): negative for a good model, before and after.
    assert before["snli test, class-id labels"]["spearman"] < -0.3
    assert (
        after["snli test, class-id labels"]["spearman"]
        < before["snli test, class-id labels"]["spearman"]
    )
    assert r["metrics"]["train_mse"]["after"] < r["metrics"]["train_mse"]["before"]
    assert json.loads((tmp_path / "ft" / "training.json").read_text())["key"] == r["key"]
