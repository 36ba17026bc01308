"""Quality figures and gates for each variant: what a user of the vectors sees, against fp32.

Measured through embedrt's own Encoder, each against the fp32 artifact's vectors:
- parity on the parity sentences (max abs diff, min cosine);
- batch invariance: each parity sentence alone against the same sentence inside one batch with
  all the others (min cosine): a production embedding must not depend on its batch company;
- cosine to fp32 over the evaluation texts: median and 1st percentile (min recorded);
- nearest-neighbour agreement with fp32 on the retrieval set: how often a query's top-1
  corpus text is the same, and how much of its top 10 is (by the model's similarity function);
- Spearman of similarity against the gold scores of the evaluation pairs, and its change from
  fp32 (manifest key stsb_dev_spearman on the shipped STS-B dev, eval_pairs_spearman on a
  user's --eval-pairs).
Why each int8 threshold is what it is: docs/decisions.md, "Issue 17: variants and the int8 gate".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedrt import Encoder
from embedrt.vectors import similarity

from .datasets import EvalData
from .parity import compare

BATCH_INVARIANCE_MIN_COSINE = 0.99999
FP16_MIN_COSINE = 0.999  # against fp32 on the CPU reference path
INT8_MAX_SPEARMAN_DROP = 0.01
INT8_MIN_MEDIAN_COSINE = 0.98  # to fp32 over the evaluation texts
INT8_MIN_P1_COSINE = 0.95  # the 1st percentile: the worst texts a user meets often enough
INT8_MIN_TOP1 = 0.85  # nearest neighbour the same as fp32's
INT8_MIN_TOP10_OVERLAP = 0.80  # mean share of a query's top 10 that fp32 also has
TOP_K = 10


@dataclass(frozen=True)
class Agreement:
    """A variant's vectors against fp32's on the evaluation data (fractions in [0, 1])."""

    median_cosine: float
    p1_cosine: float
    min_cosine: float
    texts: int
    top1: float
    top10_overlap: float
    queries: int
    corpus: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "cosine_to_fp32": {
                "median": round(self.median_cosine, 6),
                "p1": round(self.p1_cosine, 6),
                "min": round(self.min_cosine, 6),
                "texts": self.texts,
            },
            "neighbours_vs_fp32": {
                "top1_agreement": round(self.top1, 4),
                "top10_overlap": round(self.top10_overlap, 4),
                "queries": self.queries,
                "corpus": self.corpus,
            },
        }


@dataclass(frozen=True)
class Figures:
    """What a variant's gate decides on; as_dict() goes into the manifest."""

    vs_fp32: dict[str, float | int]
    batch_invariance_min_cosine: float
    spearman: float | None
    agreement: Agreement | None
    spearman_key: str = "stsb_dev_spearman"

    def as_dict(self, fp32_spearman: float | None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "parity_vs_fp32": self.vs_fp32,
            "batch_invariance_min_cosine": round(self.batch_invariance_min_cosine, 8),
        }
        if self.spearman is not None:
            d[self.spearman_key] = round(self.spearman, 5)
            if fp32_spearman is not None:
                d[f"{self.spearman_key}_minus_fp32"] = round(self.spearman - fp32_spearman, 5)
        if self.agreement is not None:
            d |= self.agreement.as_dict()
        return d

    def line(self, fp32_spearman: float | None = None) -> str:
        """Spearman (and its change from fp32), agreement with fp32 and batch invariance, for
        a person; rounded as the manifest records them, so the line and `embedrt info` agree."""
        parts = []
        if self.spearman is not None:
            rho = round(self.spearman, 5)
            name = "STS-B dev" if self.spearman_key.startswith("stsb") else "eval pairs"
            change = "" if fp32_spearman is None else f" (fp32 {rho - fp32_spearman:+.4f})"
            parts.append(f"{name} Spearman {rho:.4f}{change}")
        a = self.agreement
        if a is not None:
            parts.append(
                f"cosine to fp32 median {a.median_cosine:.4f} p1 {a.p1_cosine:.4f}, "
                f"top-1 neighbour {a.top1:.1%}, top-10 overlap {a.top10_overlap:.1%}"
            )
        parts.append(f"batch invariance {self.batch_invariance_min_cosine:.7f}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Evaluation:
    """The evaluation data and fp32's vectors of its texts (rows in data.texts order)."""

    data: EvalData
    fp32: np.ndarray
    similarity_fn: str = "cosine"

    @property
    def spearman_key(self) -> str:
        default = self.data.sources[0].name.startswith("embedrt:")
        return "stsb_dev_spearman" if default else "eval_pairs_spearman"


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of a with the same row of b; two zero rows count as equal (1.0),
    as sentence-transformers gives a zero vector for a text with no tokens."""
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    return np.where((na < 1e-12) & (nb < 1e-12), 1.0, cos)


def neighbour_agreement(
    ref_queries: np.ndarray,
    ref_corpus: np.ndarray,
    queries: np.ndarray,
    corpus: np.ndarray,
    fn: str = "cosine",
    k: int = TOP_K,
) -> tuple[float, float]:
    """(top-1 agreement, mean top-k overlap) of each query's nearest corpus rows under the
    variant's vectors against the reference's, by the similarity function fn."""
    k = min(k, len(ref_corpus))
    ref = np.argsort(-similarity(ref_queries, ref_corpus, fn), axis=1, kind="stable")[:, :k]
    got = np.argsort(-similarity(queries, corpus, fn), axis=1, kind="stable")[:, :k]
    top1 = float((ref[:, 0] == got[:, 0]).mean())
    overlap = np.mean([len(set(r) & set(g)) / k for r, g in zip(ref, got, strict=True)])
    return top1, float(overlap)


def agreement(evaluation: Evaluation, vecs: np.ndarray) -> Agreement:
    """A variant's vectors of evaluation.data.texts against fp32's."""
    data, ref = evaluation.data, evaluation.fp32
    cos = row_cosines(ref, vecs)
    index = {t: i for i, t in enumerate(data.texts)}
    q = [index[t] for t in data.queries]
    c = [index[t] for t in data.corpus]
    top1, overlap = neighbour_agreement(ref[q], ref[c], vecs[q], vecs[c], evaluation.similarity_fn)
    return Agreement(
        median_cosine=float(np.median(cos)),
        p1_cosine=float(np.percentile(cos, 1)),
        min_cosine=float(cos.min()),
        texts=len(cos),
        top1=top1,
        top10_overlap=overlap,
        queries=len(q),
        corpus=len(c),
    )


def spearman(evaluation: Evaluation, vecs: np.ndarray) -> float:
    """Spearman of the pairs' similarity (the model's function) against their gold scores."""
    from scipy.stats import spearmanr

    data = evaluation.data
    index = {t: i for i, t in enumerate(data.texts)}
    a = vecs[[index[t] for t in data.pairs.first]]
    b = vecs[[index[t] for t in data.pairs.second]]
    sims = np.array(
        [similarity(x, y, evaluation.similarity_fn)[0, 0] for x, y in zip(a, b, strict=True)]
    )
    return float(spearmanr(sims, data.pairs.scores).statistic)


def encode_texts(artifact: Path, variant: str, texts: tuple[str, ...]) -> np.ndarray:
    return Encoder.load(artifact, device="cpu", variant=variant).encode(list(texts), batch_size=64)


def measure(
    artifact: Path,
    variant: str,
    sentences: tuple[str, ...],
    fp32: np.ndarray,
    evaluation: Evaluation | None = None,
) -> Figures:
    """The variant's figures; with an evaluation, also its Spearman and agreement with fp32
    (for fp32 itself, only the Spearman)."""
    enc = Encoder.load(artifact, device="cpu", variant=variant)
    together = enc.encode(list(sentences), batch_size=64)
    alone = np.stack([enc.encode(s) for s in sentences])
    rho, agreed, key = None, None, "stsb_dev_spearman"
    if evaluation is not None:
        vecs = (
            evaluation.fp32
            if variant == "fp32"
            else enc.encode(list(evaluation.data.texts), batch_size=64)
        )
        rho, key = spearman(evaluation, vecs), evaluation.spearman_key
        agreed = None if variant == "fp32" else agreement(evaluation, vecs)
    return Figures(
        vs_fp32=compare(fp32, together).as_dict(),
        batch_invariance_min_cosine=float(row_cosines(alone, together).min()),
        spearman=rho,
        agreement=agreed,
        spearman_key=key,
    )


def int8_gate(figs: Figures, fp32_spearman: float | None) -> str:
    """Why an int8 variant is not a faithful stand-in for fp32 ('' when it is): batch
    invariance, then what a user of the vectors sees (cosine, neighbours), then Spearman."""
    if figs.batch_invariance_min_cosine < BATCH_INVARIANCE_MIN_COSINE:
        return (
            f"a text's vector depends on its batch: min cosine alone vs batched "
            f"{figs.batch_invariance_min_cosine:.7f} < {BATCH_INVARIANCE_MIN_COSINE}"
        )
    why = []
    a = figs.agreement
    if a is not None:
        for name, got, limit in (
            ("median cosine to fp32", a.median_cosine, INT8_MIN_MEDIAN_COSINE),
            ("1st-percentile cosine to fp32", a.p1_cosine, INT8_MIN_P1_COSINE),
            ("nearest-neighbour top-1 agreement with fp32", a.top1, INT8_MIN_TOP1),
            ("top-10 overlap with fp32", a.top10_overlap, INT8_MIN_TOP10_OVERLAP),
        ):
            if got < limit:
                why.append(f"{name} {got:.4f} < {limit}")
    if figs.spearman is not None and fp32_spearman is not None:
        drop = fp32_spearman - figs.spearman
        if drop > INT8_MAX_SPEARMAN_DROP:
            why.append(
                f"Spearman {figs.spearman:.4f} is {drop:.4f} below fp32's {fp32_spearman:.4f} "
                f"(limit {INT8_MAX_SPEARMAN_DROP})"
            )
    return "; ".join(why)
