"""Label orientation: do the labels point the way CosineSimilarityLoss reads them?

CosineSimilarityLoss pulls a pair's cosine towards its label, so 1.0 must mean "most similar".
A base model worth fine-tuning already ranks pairs roughly right, so on the training pairs its
cosine and correctly oriented labels correlate positively. A clearly negative Spearman means the
labels are most likely distances or class ids (the model card this project came from scaled NLI
class ids to [0, 1]: entailment 0.0, contradiction 1.0), and training would push the model the
wrong way. The verdict is pure logic on two arrays; `pair_cosines` is the part that needs a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, spearmanr

from embedrt.errors import EmbedrtError

# "Clearly negative": both a real effect (rho <= -0.1; class-id SNLI labels give about -0.45 on
# all-MiniLM-L6-v2, labels by meaning +0.45) and unlikely to be noise (one-sided p < 0.01, so a
# few dozen random pairs cannot trip it).
NEGATIVE_SPEARMAN = -0.1
MAX_PVALUE = 0.01


class LabelOrientationError(EmbedrtError, ValueError):
    """The labels look like distances: training on them would make the model worse."""


@dataclass(frozen=True)
class Orientation:
    """Base model's cosine against the labels on the training pairs."""

    spearman: float  # rank correlation, -1..1; nan when the labels are all equal
    pvalue: float  # one-sided, for "the correlation is negative"
    pairs: int
    verdict: str  # "similarity" (as expected), "distance" (clearly negative) or "unclear"

    def as_dict(self) -> dict[str, Any]:
        return {
            "spearman": _num(self.spearman),
            "pvalue_negative": _num(self.pvalue),
            "pairs": self.pairs,
            "verdict": self.verdict,
        }


def judge_orientation(cosines: np.ndarray, labels: np.ndarray) -> Orientation:
    """The verdict for one set of cosines and labels (same length)."""
    cosines, labels = np.asarray(cosines, np.float64), np.asarray(labels, np.float64)
    if cosines.shape != labels.shape or cosines.ndim != 1:
        raise ValueError(
            f"cosines {cosines.shape} and labels {labels.shape} must be equal-length vectors"
        )
    if len(labels) < 3 or np.ptp(labels) == 0 or np.ptp(cosines) == 0:
        return Orientation(math.nan, math.nan, len(labels), "unclear")
    rho = float(spearmanr(cosines, labels).statistic)
    # Under no correlation rho is ~ N(0, 1/(n-1)); unlike scipy's t-based p-value this does not
    # call 4 perfectly inverted pairs certain (p = 0.04 here, ~0 there).
    p = float(norm.cdf(rho * math.sqrt(len(labels) - 1)))
    if rho <= NEGATIVE_SPEARMAN and p < MAX_PVALUE:
        verdict = "distance"
    elif rho > 0:
        verdict = "similarity"
    else:
        verdict = "unclear"
    return Orientation(rho, p, len(labels), verdict)


def explain(o: Orientation, base: str) -> str:
    """Why training stops, and the two ways out."""
    return (
        f"the labels look inverted: on the {o.pairs} training pairs, {base}'s cosine similarity "
        f"and the labels have Spearman {o.spearman:+.3f} (p = {o.pvalue:.1e}). CosineSimilarityLoss "
        "reads a label as similarity (1.0 = most alike), so training on these would teach the model "
        "that the pairs it finds most alike are the least alike. Likely cause: the labels are "
        "distances, or class ids scaled to [0, 1] (NLI entailment 0.0 / neutral 0.5 / "
        "contradiction 1.0, the mistake of the model card this recipe comes from, which took STS-B "
        "dev Spearman from 0.867 to 0.612). Ways out: --labels distance trains on 1 - label; "
        "--labels similarity trains on the labels as given."
    )


def pair_cosines(
    model: Any, first: tuple[str, ...], second: tuple[str, ...], batch_size: int = 64
) -> np.ndarray:
    """Cosine of each (first[i], second[i]) under a SentenceTransformer model."""
    a = model.encode(
        list(first), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True
    )
    b = model.encode(
        list(second), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True
    )
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)
