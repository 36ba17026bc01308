"""Training pairs: sentence_0, sentence_1, label in [0, 1], read from jsonl, csv or parquet.

The model card's format (and sentence-transformers' CosineSimilarityLoss input): one row per pair,
label = how similar the two sentences are, 1.0 most similar. Every row is validated and an error
names the row (the line number for jsonl and csv, the 1-based row for parquet), so a bad file
fails before a model is loaded. `map_labels` is the one place where labels change meaning:
"similarity" keeps them, "distance" turns y into 1 - y.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedrt.errors import EmbedrtError
from embedrt.manifest import sha256_file

COLUMNS = ("sentence_0", "sentence_1", "label")
FORMATS = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}
LABEL_KINDS = ("similarity", "distance")


class DataError(EmbedrtError, ValueError):
    """Training data that cannot be trained on as given; the message names the file and row."""


@dataclass(frozen=True)
class TrainingPairs:
    """Validated pairs plus where they came from (recorded in the trained model's card)."""

    sentence_0: tuple[str, ...]
    sentence_1: tuple[str, ...]
    labels: tuple[float, ...]
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def __len__(self) -> int:
        return len(self.labels)


def read_pairs(path: str | Path) -> TrainingPairs:
    """Read and validate a pairs file; the format comes from the suffix (.jsonl, .csv, .parquet)."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown format {path.suffix!r}; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = {"jsonl": _jsonl_rows, "csv": _csv_rows, "parquet": _parquet_rows}[fmt](path)
    first, second, labels = [], [], []
    for where, row in rows:
        a, b, y = validate_row(row, where)
        first.append(a)
        second.append(b)
        labels.append(y)
    provenance = {
        "source": "file",
        "path": str(path.resolve()),
        "format": fmt,
        "sha256": sha256_file(path),
    }
    return make_pairs(first, second, labels, provenance, name=str(path))


def make_pairs(
    first: list[str], second: list[str], labels: list[float], provenance: dict[str, Any], name: str
) -> TrainingPairs:
    """TrainingPairs from validated columns; refuses data with nothing to learn from."""
    if not labels:
        raise DataError(f"{name}: no rows; expected columns {', '.join(COLUMNS)}")
    distinct = set(zip(first, second, strict=True))
    if len(distinct) < 2:
        raise DataError(
            f"{name}: all {len(labels)} rows are the same pair as row 1 ({first[0]!r} / "
            f"{second[0]!r}); training needs at least two different pairs"
        )
    provenance = {**provenance, "rows": len(labels), "distinct_pairs": len(distinct)}
    return TrainingPairs(tuple(first), tuple(second), tuple(labels), provenance)


def validate_row(row: Any, where: str) -> tuple[str, str, float]:
    """(sentence_0, sentence_1, label) of one row, or a DataError naming `where`."""
    if not isinstance(row, dict):
        raise DataError(
            f"{where}: expected an object with {', '.join(COLUMNS)}, got {type(row).__name__}"
        )
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise DataError(
            f"{where}: missing {', '.join(missing)} (has: {', '.join(map(str, row)) or 'nothing'})"
        )
    texts = []
    for col in COLUMNS[:2]:
        text = row[col]
        if text is None:
            raise DataError(f"{where}: {col} is missing")
        if not isinstance(text, str):
            raise DataError(f"{where}: {col} must be a string, got {type(text).__name__} {text!r}")
        if not text.strip():
            raise DataError(f"{where}: {col} is empty")
        texts.append(text)
    return texts[0], texts[1], _label(row["label"], where)


def map_labels(pairs: TrainingPairs, kind: str) -> TrainingPairs:
    """Labels read as similarity (kept) or as distance (y -> 1 - y)."""
    if kind not in LABEL_KINDS:
        raise DataError(f"labels {kind!r} is not one of {', '.join(LABEL_KINDS)}")
    labels = pairs.labels if kind == "similarity" else tuple(1.0 - y for y in pairs.labels)
    provenance = {**pairs.provenance, "labels_read_as": kind}
    return TrainingPairs(pairs.sentence_0, pairs.sentence_1, labels, provenance)


def _label(value: Any, where: str) -> float:
    given = value
    if isinstance(value, str):  # csv cells are strings
        try:
            value = float(value)
        except ValueError:
            raise DataError(f"{where}: label {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(
            f"{where}: label must be a number in [0, 1], got {type(value).__name__} {value!r}"
        )
    y = float(value)
    if not math.isfinite(y) or not 0.0 <= y <= 1.0:
        raise DataError(
            f"{where}: label {given!r} is outside [0, 1]; CosineSimilarityLoss compares labels with a "
            "cosine, so scale them first (e.g. STS scores 0-5: divide by 5)"
        )
    return y


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{n}", json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None


def _csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{path}:1: header lacks {', '.join(missing)} (has: "
                f"{', '.join(reader.fieldnames or []) or 'nothing'})"
            )
        for row in reader:
            yield f"{path}:{reader.line_num}", row


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq  # comes with `datasets` in the train extra

    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(table.column_names)})"
        )
    for n, row in enumerate(table.select(list(COLUMNS)).to_pylist(), 1):
        yield f"{path} row {n}", row
