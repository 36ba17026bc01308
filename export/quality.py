"""Quality figures and gates for each variant, measured through embedrt's own Encoder.

- parity with the fp32 artifact on the parity sentences (max abs diff, min cosine);
- batch invariance: each parity sentence alone against the same sentence inside one batch with
  all the others (min cosine): a production embedding must not depend on its batch company;
- Spearman of cosine on STS-B dev against the gold scores, and its difference to fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedrt import Encoder
from embedrt.errors import ModelLoadError

from .datasets import load_stsb
from .parity import compare

BATCH_INVARIANCE_MIN_COSINE = 0.99999
INT8_MAX_SPEARMAN_DROP = 0.01
FP16_MIN_COSINE = 0.999  # against fp32 on the CPU reference path


@dataclass(frozen=True)
class Figures:
    """What a variant's gate decides on; as_dict() goes into the manifest."""

    vs_fp32: dict[str, float | int]
    batch_invariance_min_cosine: float
    stsb_dev_spearman: float | None

    def as_dict(self, fp32_spearman: float | None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "parity_vs_fp32": self.vs_fp32,
            "batch_invariance_min_cosine": round(self.batch_invariance_min_cosine, 8),
        }
        if self.stsb_dev_spearman is not None:
            d["stsb_dev_spearman"] = round(self.stsb_dev_spearman, 5)
            if fp32_spearman is not None:
                d["stsb_dev_spearman_minus_fp32"] = round(self.stsb_dev_spearman - fp32_spearman, 5)
        return d


def stsb_spearman(enc: Encoder) -> float | None:
    """Spearman of cosine against STS-B dev gold scores, or None when the data is not installed."""
    from scipy.stats import spearmanr

    try:
        dev = load_stsb("dev")
    except ModelLoadError:
        return None
    texts = list(dict.fromkeys(dev.first + dev.second))
    index = {t: i for i, t in enumerate(texts)}
    vecs = enc.encode(texts, batch_size=64)
    a = vecs[[index[t] for t in dev.first]]
    b = vecs[[index[t] for t in dev.second]]
    return float(spearmanr(_row_cosine(a, b), dev.scores).statistic)


def _row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(na * nb, 1e-12)


def measure(
    artifact: Path,
    variant: str,
    sentences: tuple[str, ...],
    fp32: np.ndarray,
    with_stsb: bool = True,
) -> Figures:
    enc = Encoder.load(artifact, device="cpu", variant=variant)
    together = enc.encode(list(sentences), batch_size=64)
    alone = np.stack([enc.encode(s) for s in sentences])
    return Figures(
        vs_fp32=compare(fp32, together).as_dict(),
        batch_invariance_min_cosine=float(_row_cosine(alone, together).min()),
        stsb_dev_spearman=stsb_spearman(enc) if with_stsb else None,
    )
