"""embedrt train on a tiny random BERT: the loss goes down, runs repeat exactly, the output
exports as is, the card records the run, and an unchanged run is skipped."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import build_st_model
from fixtures.toy_pairs import toy_rows
from safetensors.numpy import load_file
from sentence_transformers import SentenceTransformer

from embedrt import Encoder
from embedrt.errors import ConfigError
from embedrt.export import export_model
from embedrt.export.train.evaluation import EvalSet
from embedrt.export.train.pairs import read_pairs
from embedrt.export.train.recipe import Recipe
from embedrt.export.train.trainer import train_model

# A learning rate the tiny model can move with in a few steps (the card's 5e-5 barely does).
TINY = dict(batch_size=8, learning_rate=1e-3, max_steps=12)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_st_model(tmp_path_factory.mktemp("train") / "base", seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_rows()))
    return path


@pytest.fixture(scope="module")
def toy_eval():
    rows = toy_rows()[::5]
    return EvalSet(
        "toy",
        tuple(r["sentence_0"] for r in rows),
        tuple(r["sentence_1"] for r in rows),
        tuple(r["label"] for r in rows),
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base, data, toy_eval):
    out = tmp_path_factory.mktemp("runs") / "ft"
    return train_model(
        read_pairs(data),
        out,
        Recipe(base=str(base), **TINY),
        eval_sets=[toy_eval],
        log=lambda _: None,
    )


def test_loss_goes_down(trained):
    t, m = trained.record["training"], trained.record["metrics"]
    assert t["steps"] == 12 and len(t["losses"]) == 12
    assert np.mean(t["losses"][-4:]) < 0.7 * np.mean(t["losses"][:4])
    assert m["train_mse"]["after"] < 0.7 * m["train_mse"]["before"]  # over all pairs, in eval mode
    assert m["after"]["toy"]["spearman"] > m["before"]["toy"]["spearman"]


def test_same_data_and_seed_give_the_same_model(tmp_path, base, data, toy_eval, trained):
    again = train_model(
        read_pairs(data),
        tmp_path / "again",
        Recipe(base=str(base), **TINY),
        eval_sets=[toy_eval],
        log=lambda _: None,
    )
    assert again.record["training"]["losses"] == trained.record["training"]["losses"]
    assert again.record["metrics"] == trained.record["metrics"]
    a, b = load_file(trained.out / "model.safetensors"), load_file(again.out / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_output_exports_as_is(tmp_path, trained, base):
    export_model(trained.out, tmp_path / "artifact")
    texts = ["the man plays guitar", "a dog is lazy", "the market fell sharply on monday"]
    ours = Encoder.load(tmp_path / "artifact", device="cpu", precision="fp32").encode(texts)
    ref = SentenceTransformer(str(trained.out), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    before = SentenceTransformer(str(base), device="cpu").encode(texts)
    assert not np.allclose(ref, before, atol=1e-3), "the export must carry the trained weights"
    assert json.loads((tmp_path / "artifact" / "embedrt.json").read_text())["max_seq_length"] == 24


def test_card_records_recipe_data_metrics_versions(trained, data):
    card = (trained.out / "README.md").read_text()
    record = json.loads((trained.out / "training.json").read_text())
    assert record == trained.record
    for fact in (
        "CosineSimilarityLoss (MSE)",
        "batch 8",
        "learning rate 0.001",
        "linear schedule",
        "seed 42",
        "12 steps",
        record["data"]["sha256"],
        record["base"]["weights_sha256"],
        "| toy | 20 |",
        "sentence-transformers 6.",
        "torch 2.",
        "verdict **similarity**",
    ):
        assert fact in card, fact
    assert record["data"]["path"] == str(data.resolve()) and record["data"]["rows"] == 100


def test_unchanged_run_is_skipped_changed_run_is_not(tmp_path, base, data, toy_eval):
    out = tmp_path / "ft"
    recipe = Recipe(base=str(base), batch_size=8, max_steps=2)
    first = train_model(read_pairs(data), out, recipe, eval_sets=[toy_eval], log=lambda _: None)
    stamp = (out / "training.json").stat().st_mtime_ns
    logs = []
    again = train_model(read_pairs(data), out, recipe, eval_sets=[toy_eval], log=logs.append)
    assert again.skipped and again.record == first.record and "up to date" in logs[0]
    assert (out / "training.json").stat().st_mtime_ns == stamp
    changed = train_model(
        read_pairs(data),
        out,
        Recipe(base=str(base), batch_size=8, max_steps=2, seed=7),
        eval_sets=[toy_eval],
        log=lambda _: None,
    )
    assert not changed.skipped and changed.record["key"] != first.record["key"]
    forced = train_model(
        read_pairs(data),
        out,
        Recipe(base=str(base), batch_size=8, max_steps=2, seed=7),
        eval_sets=[toy_eval],
        force=True,
        log=lambda _: None,
    )
    assert not forced.skipped
    assert [p.name for p in tmp_path.iterdir()] == ["ft"], "no partial or old folders left behind"


def test_refuses_to_replace_a_foreign_folder(tmp_path, base, data):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not written by embedrt train"):
        train_model(read_pairs(data), tmp_path / "out", Recipe(base=str(base)))
    assert (tmp_path / "out" / "notes.txt").read_text() == "keep"


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "embedrt.cli", "train", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_trains_and_evaluates_on_stsb_dev(tmp_path, base, data):
    res = cli(
        "--data", data, "--out", tmp_path / "ft", "--base", base, "--max-steps", 3, "--lr", 1e-3
    )
    assert res.returncode == 0, res.stderr
    assert "trained 3 steps" in res.stdout and "before sts-b dev: Spearman" in res.stdout
    record = json.loads((tmp_path / "ft" / "training.json").read_text())
    assert record["metrics"]["after"]["sts-b dev"]["pairs"] == 1500
    assert record["command"].startswith(f"embedrt train --data {data} --out {tmp_path / 'ft'}")


def test_cli_errors_exit_2_naming_the_problem(tmp_path, base):
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence_0,sentence_1,label\na,b,0.5\nc,d,7\n")
    res = cli("--data", bad, "--out", tmp_path / "ft", "--base", base)
    assert res.returncode == 2 and "bad.csv:3: label '7' is outside [0, 1]" in res.stderr
    inverted = tmp_path / "inverted.jsonl"
    inverted.write_text("".join(json.dumps(r) + "\n" for r in toy_rows(inverted=True)))
    res = cli("--data", inverted, "--out", tmp_path / "ft", "--base", base)
    assert res.returncode == 2 and "--labels distance" in res.stderr
    assert not (tmp_path / "ft").exists()


def test_recipe_defaults_are_the_cards_and_bad_values_are_refused():
    r = Recipe()
    assert (
        r.base,
        r.batch_size,
        r.epochs,
        r.learning_rate,
        r.schedule,
        r.warmup_steps,
        r.seed,
    ) == ("all-MiniLM-L6-v2", 16, 1, 5e-5, "linear", 0, 42)
    with pytest.raises(ConfigError, match="batch_size 0, learning_rate -1"):
        Recipe(batch_size=0, learning_rate=-1)
