"""Training pairs files: jsonl, csv and parquet read alike; every bad row is named."""

import csv
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedrt.export.train.pairs import DataError, map_labels, read_pairs

ROWS = [
    {"sentence_0": "A man plays a guitar.", "sentence_1": "Someone plays music.", "label": 0.8},
    {"sentence_0": "A dog sleeps.", "sentence_1": "The market fell.", "label": 0},
    {"sentence_0": "Ein Hund schläft.", "sentence_1": "A dog sleeps.", "label": 1.0},
]


def write(path, rows, fmt=None):
    fmt = fmt or path.suffix[1:]
    if fmt == "jsonl":
        path.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    elif fmt == "csv":
        keys = list(dict.fromkeys(k for r in rows for k in r)) or [
            "sentence_0",
            "sentence_1",
            "label",
        ]
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_formats_read_alike(tmp_path, suffix):
    pairs = read_pairs(write(tmp_path / f"pairs{suffix}", ROWS))
    assert pairs.sentence_0 == tuple(r["sentence_0"] for r in ROWS)
    assert pairs.sentence_1[2] == "A dog sleeps."
    assert pairs.labels == (0.8, 0.0, 1.0)
    assert pairs.provenance["rows"] == 3 and len(pairs.provenance["sha256"]) == 64


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n" + '{"sentence_0": "x"}\n'
    )
    with pytest.raises(DataError, match=r"p\.jsonl:4: missing sentence_1, label"):
        read_pairs(path)


BAD_LABELS = [
    (1.5, "outside"),
    (-0.1, "outside"),
    (math.inf, "outside"),
    ("high", "not a number"),
    (True, "must be a number"),
    (None, "must be a number"),
    ([0.5], "must be a number"),
]


@pytest.mark.parametrize("label, message", BAD_LABELS)
def test_bad_label_names_the_row(tmp_path, label, message):
    rows = ROWS + [{"sentence_0": "a", "sentence_1": "b", "label": label}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows).replace("Infinity", "1e999"))
    with pytest.raises(DataError, match=rf"p\.jsonl:4: label .*{message}"):
        read_pairs(path)


def test_csv_label_errors_name_the_line(tmp_path):
    path = write(
        tmp_path / "p.csv", ROWS + [{"sentence_0": "a", "sentence_1": "b", "label": "3.5"}]
    )
    with pytest.raises(DataError, match=r"p\.csv:5: label '3.5' is outside \[0, 1\].*divide by 5"):
        read_pairs(path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sentence_0", 17, "sentence_0 must be a string, got int"),
        ("sentence_1", "   ", "sentence_1 is empty"),
        ("sentence_1", None, "sentence_1 is missing"),
    ],
)
def test_bad_sentence_names_the_row(tmp_path, field, value, message):
    rows = [dict(r) for r in ROWS]
    rows[1][field] = value
    with pytest.raises(DataError, match=rf"p\.jsonl:2: {message}"):
        read_pairs(write(tmp_path / "p.jsonl", rows))


def test_missing_columns(tmp_path):
    rows = [{"sentence_0": r["sentence_0"], "sentence_1": r["sentence_1"]} for r in ROWS]
    with pytest.raises(
        DataError, match=r"p\.csv:1: header lacks label \(has: sentence_0, sentence_1\)"
    ):
        read_pairs(write(tmp_path / "p.csv", rows))
    with pytest.raises(DataError, match=r"p\.parquet: missing column\(s\) label"):
        read_pairs(write(tmp_path / "p.parquet", rows))
    with pytest.raises(DataError, match=r"p\.jsonl:1: missing label"):
        read_pairs(write(tmp_path / "p.jsonl", rows))


def test_parquet_rows_are_named(tmp_path):
    rows = ROWS + [{"sentence_0": "a", "sentence_1": "b", "label": 2.0}]
    with pytest.raises(DataError, match=r"p\.parquet row 4: label 2\.0 is outside"):
        read_pairs(write(tmp_path / "p.parquet", rows))


def test_empty_and_duplicate_only_data(tmp_path):
    with pytest.raises(DataError, match="no rows"):
        read_pairs(write(tmp_path / "empty.jsonl", []))
    with pytest.raises(DataError, match="no rows"):
        read_pairs(write(tmp_path / "empty.csv", []))
    with pytest.raises(DataError, match="all 5 rows are the same pair as row 1"):
        read_pairs(write(tmp_path / "dup.jsonl", [ROWS[0]] * 5))


def test_not_json_unknown_format_missing_file(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"p\.jsonl:2: not valid JSON"):
        read_pairs(path)
    with pytest.raises(DataError, match=r"unknown format '\.txt'"):
        read_pairs(tmp_path / "p.txt")
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "absent.csv")


def test_distance_labels_are_flipped(tmp_path):
    pairs = read_pairs(write(tmp_path / "p.jsonl", ROWS))
    flipped = map_labels(pairs, "distance")
    assert flipped.labels == pytest.approx((0.2, 1.0, 0.0))
    assert flipped.provenance["labels_read_as"] == "distance"
    assert map_labels(pairs, "similarity").labels == pairs.labels
    with pytest.raises(DataError, match="not one of similarity, distance"):
        map_labels(pairs, "cosine")
