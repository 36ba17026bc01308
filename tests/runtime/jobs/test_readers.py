"""Input readers: every format, line numbers, and a named reason for each kind of bad row."""

import csv
import gzip

import pytest
from fixtures.rows import write

from embedrt.errors import InputError
from embedrt.jobs.readers import InputSpec, iter_records

ROWS = [
    {"id": "a1", "text": "the man plays guitar"},
    {"id": "b2", "text": 'she said "hi",\tthen left'},
    {"id": "c3", "text": "ünïcödé – 東京"},
]


def records(path, **kw):
    return list(iter_records(InputSpec.of(path, **kw)))


@pytest.mark.parametrize(
    "name",
    [
        "in.txt",
        "in.jsonl",
        "in.csv",
        "in.tsv",
        "in.parquet",
        "in.txt.gz",
        "in.jsonl.gz",
        "in.csv.gz",
        "in.tsv.gz",
    ],
)
def test_each_format_reads_texts_ids_and_positions(tmp_path, name):
    fmt = name.split(".")[1]
    rows = [dict(r, text=r["text"].replace("\t", " ")) for r in ROWS] if fmt == "tsv" else ROWS
    path = write(tmp_path / name, rows, fmt)
    recs = records(path, id_field=None if fmt == "txt" else "id")
    assert [r.error for r in recs] == [None] * 3
    assert [r.text for r in recs] == [r["text"] for r in rows]
    first_line = 2 if fmt in ("csv", "tsv") else 1  # a header takes line 1
    assert [r.line for r in recs] == [first_line, first_line + 1, first_line + 2]
    assert [r.id for r in recs] == ([1, 2, 3] if fmt == "txt" else ["a1", "b2", "c3"])


def test_ids_default_to_line_numbers(tmp_path):
    path = write(tmp_path / "in.csv", ROWS, "csv")
    assert [r.id for r in records(path)] == [2, 3, 4]


def test_csv_quoted_newlines_keep_the_start_line(tmp_path):
    path = write(
        tmp_path / "in.csv", [{"id": 1, "text": "two\nlines"}, {"id": 2, "text": "after"}], "csv"
    )
    recs = records(path)
    assert [(r.line, r.text) for r in recs] == [(2, "two\nlines"), (4, "after")]


def test_tsv_quotes_are_literal(tmp_path):
    path = tmp_path / "in.tsv"
    path.write_text('text\n"starts with a quote\nnext\n')
    assert [r.text for r in records(path)] == ['"starts with a quote', "next"]


def test_bad_rows_name_line_and_reason(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                b'{"text": "fine"}',
                b'{"body": "no text field"}',
                b'{"text": 42}',
                b'{"text": "bad \xff byte"}',
                b"",
                b"   ",
                b'{"text": "lone \\ud800 surrogate"}',
                b"not json",
                b"[1, 2]",
                b'{"text": null}',
                b'{"text": "  "}',
            ]
        )
        + b"\n"
    )
    reasons = {r.line: r.error for r in records(path)}
    assert reasons[1] is None
    assert "missing text field 'text'" in reasons[2] and "body" in reasons[2]
    assert reasons[3] == "text field 'text' is number, expected a string"
    assert reasons[4] == "invalid UTF-8 at byte 15 of the line"
    assert reasons[5] == reasons[6] == "empty line"
    assert reasons[7].startswith("invalid UTF-8")
    assert reasons[8].startswith("invalid JSON")
    assert reasons[9] == "expected a JSON object, got array"
    assert reasons[10] == "text field 'text' is null, expected a string"
    assert reasons[11] == "empty text"


def test_bad_ids_and_csv_rows(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "x"}\n{"text": "x", "id": 1.5}\n{"text": "x", "id": 7}\n')
    reasons = [r.error for r in records(path, id_field="id")]
    assert (
        reasons[0] == "missing id field 'id'" and "is number" in reasons[1] and reasons[2] is None
    )
    assert records(path, id_field="id")[2].id == "7"
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text\n1,ok\n2\n\n3,bad \xfe\n")
    recs = records(path)
    assert [r.error for r in recs] == [
        None,
        "has 1 fields, the header has 2",
        "empty line",
        "invalid UTF-8 (a lone surrogate or undecodable bytes)",
    ]
    assert [r.line for r in recs] == [2, 3, 4, 5]


def test_ids_that_are_not_utf8_are_bad_rows(tmp_path):
    # The writers store string ids as UTF-8: a lone surrogate must be named here, with its line,
    # not surface later as a UnicodeEncodeError of the parquet writer.
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "text": "x"}\n{"id": "b\\ud800", "text": "x"}\n')
    recs = records(path, id_field="id")
    assert [(r.line, r.error) for r in recs] == [
        (1, None),
        (2, "id field 'id' is invalid UTF-8 (a lone surrogate or undecodable bytes)"),
    ]
    path = tmp_path / "in.csv"
    path.write_bytes(b"id,text\nok,x\nbad \xfe,x\n")
    assert [(r.line, r.error is None) for r in records(path, id_field="id")] == [
        (2, True),
        (3, False),
    ]
    assert "id field 'id' is invalid UTF-8" in records(path, id_field="id")[1].error


def test_json_past_the_parser_limits_is_a_bad_row(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"text": "fine"}\n{"text": "x", "n": '
        + "9" * 5000
        + "}\n"
        + "[" * 100_000
        + "]" * 100_000
        + '\n{"text": "fine"}\n'
    )
    recs = records(path)
    assert [r.line for r in recs] == [1, 2, 3, 4] and recs[0].error is recs[3].error is None
    assert recs[1].error.startswith("invalid JSON: Exceeds the limit") and "digits" in recs[1].error
    assert recs[2].error == "invalid JSON: nested too deeply to parse"


def test_csv_byte_order_mark_is_not_part_of_the_header(tmp_path):
    for fmt in ("csv", "tsv"):
        path = tmp_path / f"in.{fmt}"
        sep = "," if fmt == "csv" else "\t"
        path.write_bytes(f"\ufeffid{sep}text\na1{sep}hello\n".encode())  # as Excel saves UTF-8
        assert [(r.id, r.text) for r in records(path, id_field="id")] == [("a1", "hello")]


def test_reading_csv_leaves_the_process_wide_field_limit_alone(tmp_path):
    path = write(tmp_path / "in.csv", ROWS, "csv")
    before = csv.field_size_limit()
    try:
        csv.field_size_limit(1 << 20)  # another library's choice
        assert len(records(path)) == 3
        assert csv.field_size_limit() == 1 << 20
    finally:
        csv.field_size_limit(before)


def test_parquet_nulls_are_bad_rows(tmp_path):
    path = write(tmp_path / "in.parquet", [{"text": "x"}, {"text": None}, {"text": ""}], "parquet")
    assert [(r.line, r.error) for r in records(path)] == [
        (1, None),
        (2, "text field 'text' is null, expected a string"),
        (3, "empty text"),
    ]


def test_long_lines_are_read_whole(tmp_path):
    long = "guitar " * 300_000  # 2.1 MB: past csv's default 128 KiB field limit
    for fmt in ("txt", "csv", "jsonl"):
        path = write(
            tmp_path / f"in.{fmt}", [{"id": 1, "text": long}, {"id": 2, "text": "short"}], fmt
        )
        assert [r.text for r in records(path)] == [long, "short"]


def test_whole_file_errors(tmp_path):
    with pytest.raises(InputError, match="cannot tell the format"):
        InputSpec.of(tmp_path / "in.xlsx")
    with pytest.raises(InputError, match="does not exist"):
        InputSpec.of(tmp_path / "missing.txt")
    path = write(tmp_path / "in.csv", ROWS, "csv")
    with pytest.raises(InputError, match="no column 'body'.*columns: id, text"):
        records(path, text_field="body")
    path = write(tmp_path / "in.parquet", [{"text": 1}], "parquet")
    with pytest.raises(InputError, match="is int64, expected string"):
        records(path)
    path = write(tmp_path / "in.jsonl.gz", ROWS * 2000, "jsonl")
    path.write_bytes(path.read_bytes()[:-100])  # truncated download
    with pytest.raises(InputError, match="cannot read past line"):
        records(path)
    # Two good lines, then a gzip member whose deflate block type is invalid: zlib.error.
    bad_member = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\x07" + bytes(20)
    path.write_bytes(gzip.compress(b'{"text": "a"}\n{"text": "b"}\n') + bad_member)
    with pytest.raises(
        InputError, match=r"in.jsonl.gz: cannot read past line 2: error: .*invalid block"
    ):
        records(path)


def test_empty_files(tmp_path):
    for name in ("in.txt", "in.jsonl", "in.csv", "in.txt.gz"):
        path = tmp_path / name
        (gzip.open if name.endswith(".gz") else open)(path, "wb").close()
        assert records(path) == []


def test_a_csv_quote_that_never_closes_fails_the_file_naming_its_line(tmp_path):
    # Python's csv without strict mode reads to the end of the file inside the quote: rows 3..
    # would vanish into row 2's text, and the job would report success.
    lines = ["id,text"] + [f"{i},row {i}" for i in range(1, 11)] + ['11,"opens and never closes']
    lines += [f"{i},row {i}" for i in range(12, 1000)]
    path = tmp_path / "q.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"q.csv: the record starting at line 12 is not valid CSV"):
        list(iter_records(InputSpec.of(path, id_field="id")))


def test_a_csv_quote_followed_by_text_fails_the_file(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('id,text\n1,"fine"\n2,"closed"then more\n3,x\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 3 is not valid CSV"):
        list(iter_records(InputSpec.of(path)))


@pytest.mark.parametrize("fmt", ["jsonl", "txt"])
def test_a_byte_order_mark_before_the_first_line_is_not_text(tmp_path, fmt):
    path = write(tmp_path / f"in.{fmt}", ROWS, fmt)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    recs = list(iter_records(InputSpec.of(path)))
    assert [r.error for r in recs] == [None, None, None]
    assert recs[0].text == ROWS[0]["text"]
