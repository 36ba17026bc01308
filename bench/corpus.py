"""The benchmark corpus: real sentences with a long tail of lengths, the same for every candidate.

STS-B (all splits, ~17k distinct sentences of news, captions and forum text) is mostly short, as
queries are; documents are longer. Each corpus text joins k STS-B sentences (seed 0): k is
geometric with mean 1.5 for 90% of texts and mean 12 for the other 10%, so most texts are a
sentence or two and a tail of a few percent runs past 256 tokens, where truncation kicks in.

    python bench/corpus.py --texts 3000 --out /tmp/corpus.jsonl
    python bench/corpus.py --kind sentences --texts 4000 --out /tmp/sentences.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

KINDS = ("long-tail", "sentences")


def build_corpus(n_texts: int, seed: int = 0, kind: str = "long-tail") -> list[str]:
    """n_texts texts of the given kind: "long-tail" (above) or "sentences" (n distinct STS-B
    sentences in a seeded random order, the short-query case)."""
    from embedrt.export.datasets import load_stsb

    sentences: list[str] = []
    for split in ("train", "dev", "test"):
        pairs = load_stsb(split)
        sentences.extend(pairs.first + pairs.second)
    sentences = list(dict.fromkeys(sentences))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sentences))
    if kind == "sentences":
        if n_texts > len(order):
            raise SystemExit(f"only {len(order)} distinct STS-B sentences; ask for fewer texts")
        return [sentences[i] for i in order[:n_texts]]
    if kind != "long-tail":
        raise SystemExit(f"corpus kind must be one of {KINDS}, got {kind!r}")
    # 90% short texts (mean 1.5 sentences), 10% documents (mean 12 sentences): the long tail.
    long = rng.random(n_texts) < 0.10
    counts = np.where(long, rng.geometric(1 / 12, n_texts), rng.geometric(1 / 1.5, n_texts))
    texts, pos = [], 0
    for k in counts:
        idx = order[(pos + np.arange(k)) % len(order)]
        texts.append(" ".join(sentences[i] for i in idx))
        pos += k
    return texts


def write_corpus(path: Path, texts: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")


def read_corpus(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=3000)
    ap.add_argument("--kind", choices=KINDS, default="long-tail")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    write_corpus(args.out, build_corpus(args.texts, kind=args.kind))
