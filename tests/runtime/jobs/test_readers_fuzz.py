"""Readers against any file (hypothesis): a record per row or a named InputError, never another
exception, and never a row lost or merged without a word.

Two properties for every format: (1) random texts and ids written correctly come back exactly,
one record per row, in order; (2) arbitrary bytes, or a valid file with bytes flipped, cut or
inserted, give records or InputError, nothing else.
"""

import csv
import gzip
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedrt.errors import InputError
from embedrt.jobs.readers import InputSpec, iter_records

FORMATS = ["txt", "jsonl", "csv", "tsv", "txt.gz", "jsonl.gz", "csv.gz"]
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Texts a user has: any printable Unicode with spaces, quotes, commas, tabs inside (not at the
# ends: the readers keep texts as written, and a blank text is a bad row by design).
TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\ufeff"
    ),
    min_size=1,
    max_size=60,
).map(lambda t: "x" + t + "y")
ROWS = st.lists(TEXT, min_size=1, max_size=30)


def encode(texts: list[str], fmt: str) -> bytes:
    """A correct file of these texts (ids r0, r1, ... where the format has fields)."""
    base = fmt.removesuffix(".gz")
    if base == "txt":
        data = "".join(t.replace("\n", " ").replace("\r", " ") + "\n" for t in texts).encode()
    elif base == "jsonl":
        data = "".join(
            json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(texts)
        ).encode()
    elif base == "csv":
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["id", "text"])
        w.writerows([f"r{i}", t] for i, t in enumerate(texts))
        data = out.getvalue().encode()
    else:  # tsv: no quoting, so no tabs or newlines inside a text
        clean = [t.replace("\t", " ").replace("\n", " ").replace("\r", " ") for t in texts]
        data = ("id\ttext\n" + "".join(f"r{i}\t{t}\n" for i, t in enumerate(clean))).encode()
    return gzip.compress(data) if fmt.endswith(".gz") else data


def expected(texts: list[str], fmt: str) -> list[str]:
    base = fmt.removesuffix(".gz")
    if base == "txt":
        return [t.replace("\n", " ").replace("\r", " ") for t in texts]
    if base == "tsv":
        return [t.replace("\t", " ").replace("\n", " ").replace("\r", " ") for t in texts]
    return texts


def read(tmp_path, fmt: str, data: bytes):
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(data)
    id_field = None if fmt.startswith("txt") else "id"
    return list(iter_records(InputSpec.of(path, id_field=id_field)))


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(texts=ROWS)
def test_every_row_written_comes_back_once_in_order(tmp_path, fmt, texts):
    recs = read(tmp_path, fmt, encode(texts, fmt))
    assert [r.error for r in recs] == [None] * len(texts)
    assert [r.text for r in recs] == expected(texts, fmt)
    if not fmt.startswith("txt"):
        assert [r.id for r in recs] == [f"r{i}" for i in range(len(texts))]


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(texts=ROWS, data=st.data())
def test_a_damaged_file_gives_records_or_a_named_error(tmp_path, fmt, texts, data):
    good = encode(texts, fmt)
    how = data.draw(st.sampled_from(["flip", "cut", "insert", "noise"]))
    at = data.draw(st.integers(0, len(good)))
    if how == "flip" and at < len(good):
        bad = good[:at] + bytes([good[at] ^ data.draw(st.integers(1, 255))]) + good[at + 1 :]
    elif how == "cut":
        bad = good[:at]
    elif how == "insert":
        bad = (
            good[:at]
            + data.draw(st.sampled_from([b'"', b"\x00", b"\n", b"\xff\xfe", b"\t", b",", b"{"]))
            + good[at:]
        )
    else:
        bad = data.draw(st.binary(max_size=300))
    try:
        recs = read(tmp_path, fmt, bad)
    except InputError as e:
        assert str(e)  # named: it says what and where
        return
    # No silent merge: a file that still parses never yields more text than was written,
    # and every record is either a text or a named bad row.
    assert all((r.text is None) == (r.error is not None) for r in recs)
    assert all(r.error for r in recs if r.text is None)
