"""Input readers for batch jobs: txt, jsonl, csv, tsv (each optionally .gz) and parquet, streamed.

    for rec in iter_records(InputSpec.of("rows.jsonl.gz", text_field="text")):
        rec.line, rec.id, rec.text, rec.error      # error is set (and text None) for a bad row

Every record carries where it came from (1-based line for text formats, row for parquet) so a
bad row can be named exactly. Bad rows are records with a reason rather than exceptions: the
job decides whether to stop or to skip them. Problems that make the whole file unreadable
(unknown suffix, missing column, corrupt gzip, broken CSV quoting) raise InputError.
Files are read line by line (parquet: batch by batch), never whole into memory.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from ..errors import InputError, json_type, missing_extra
from ..tokenizer import utf8_encodable

TEXT_FORMATS = ("txt", "jsonl", "csv", "tsv")
SUFFIXES = {
    ".txt": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
}
BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, which Windows editors write first
PARQUET_BATCH_ROWS = 4096  # rows converted to Python at once: bounded memory, amortized calls

# csv refuses fields over 128 KiB by default; a long document is a valid text (truncated later).
# The limit is one process-wide setting of the csv module with no per-reader override, and it is
# read while rows are parsed, so it cannot be restored around a lazy read: set once, at import,
# rather than on every read. (2**31 - 1: the largest value a C long takes on every platform.)
csv.field_size_limit(2**31 - 1)


@dataclass(frozen=True)
class InputSpec:
    """An input file and how to read it.

    fmt: txt | jsonl | csv | tsv | parquet. gz: the file is gzip-compressed (text formats only).
    text_field: the field / column holding the text (ignored for txt: the line is the text).
    id_field: the field holding each row's id; None = the row's line (or parquet row) number.
    """

    path: Path
    fmt: str
    gz: bool = False
    text_field: str = "text"
    id_field: str | None = None

    @classmethod
    def of(
        cls, path: str | Path, text_field: str = "text", id_field: str | None = None
    ) -> InputSpec:
        """The spec of a file, its format taken from the suffix (e.g. rows.jsonl.gz)."""
        path = Path(path)
        suffixes = [s.lower() for s in path.suffixes]
        gz = bool(suffixes) and suffixes[-1] == ".gz"
        ext = (
            suffixes[-2]
            if gz and len(suffixes) > 1
            else (suffixes[-1] if suffixes and not gz else "")
        )
        fmt = SUFFIXES.get(ext)
        if fmt is None or (gz and fmt == "parquet"):
            known = ", ".join(sorted(SUFFIXES)) + " (text formats also as .gz)"
            raise InputError(
                f"cannot tell the format of {str(path)!r} from its name; known: {known}"
            )
        if not path.is_file():
            raise InputError(f"input file {str(path)!r} does not exist")
        return cls(path, fmt, gz, text_field, id_field)

    @property
    def unit(self) -> str:
        """What a record's position counts: lines in text files, rows in parquet."""
        return "row" if self.fmt == "parquet" else "line"


RowId = int | str  # a row's id in the output: its line (or parquet row) number, or its id field


@dataclass(frozen=True)
class Record:
    """One input row. A bad row has error set (why) and text None."""

    line: int
    id: RowId
    text: str | None
    error: str | None = None


def iter_records(spec: InputSpec) -> Iterator[Record]:
    """The records of an input, in file order."""
    if spec.fmt == "parquet":
        yield from _parquet(spec)
        return
    with open(spec.path, "rb") as raw:
        f = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if spec.gz else raw
        line = 0
        try:
            if spec.fmt in ("txt", "jsonl"):
                for line, data in enumerate(f, 1):
                    yield _line_record(spec, line, data)
            else:
                for rec in _delimited(spec, f):
                    line = rec.line
                    yield rec
        except (OSError, EOFError, zlib.error, csv.Error) as e:  # corrupt gzip, broken quoting
            raise InputError(
                f"{spec.path}: cannot read past {spec.unit} {line}: {type(e).__name__}: {e}"
            ) from None


def _line_record(spec: InputSpec, line: int, data: bytes) -> Record:
    if line == 1 and data.startswith(BOM):  # a byte order mark is not text (csv drops it too)
        data = data[len(BOM) :]
    data = data[:-1] if data.endswith(b"\n") else data
    data = data[:-1] if data.endswith(b"\r") else data  # CRLF files
    if not data.strip():
        return Record(line, line, None, "empty line")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return Record(line, line, None, f"invalid UTF-8 at byte {e.start + 1} of the line")
    if spec.fmt == "txt":
        return Record(line, line, text)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return Record(line, line, None, f"invalid JSON: {e.msg} at column {e.colno}")
    except ValueError as e:  # an integer of more than 4300 digits (Python's int() limit)
        return Record(line, line, None, f"invalid JSON: {str(e).split(';')[0]}")
    except RecursionError:  # a few thousand nested brackets exhaust the parser's stack
        return Record(line, line, None, "invalid JSON: nested too deeply to parse")
    if not isinstance(obj, dict):
        return Record(line, line, None, f"expected a JSON object, got {json_type(obj)}")
    return fields_record(spec, line, obj)


def fields_record(spec: InputSpec, line: int, row: dict[str, Any]) -> Record:
    """A record from a row's fields: checks the text field and the id field."""
    rid: int | str = line
    if spec.id_field is not None:
        if spec.id_field not in row:
            return Record(line, line, None, f"missing id field {spec.id_field!r}")
        rid = row[spec.id_field]
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            return Record(
                line,
                line,
                None,
                f"id field {spec.id_field!r} is {json_type(rid)}, expected a string or integer",
            )
        rid = str(rid)
        if not utf8_encodable(
            rid
        ):  # the writers store ids as UTF-8: a bad one must fail here, named
            return Record(
                line,
                line,
                None,
                f"id field {spec.id_field!r} is invalid UTF-8 (a lone surrogate or undecodable bytes)",
            )
    if spec.text_field not in row:
        fields = ", ".join(map(str, list(row)[:10])) or "none"
        return Record(line, rid, None, f"missing text field {spec.text_field!r} (fields: {fields})")
    text = row[spec.text_field]
    if not isinstance(text, str):
        return Record(
            line,
            rid,
            None,
            f"text field {spec.text_field!r} is {json_type(text)}, expected a string",
        )
    error = _text_error(text)
    return Record(line, rid, None, error) if error else Record(line, rid, text)


def _text_error(text: str) -> str | None:
    if not text.strip():
        return "empty text"
    if not utf8_encodable(text):
        return "invalid UTF-8 (a lone surrogate or undecodable bytes)"
    return None


def _delimited(spec: InputSpec, f: IO[bytes]) -> Iterator[Record]:
    # surrogateescape keeps undecodable bytes as lone surrogates, so one bad row is reported
    # (and skippable) instead of the decoder failing the whole file. utf-8-sig drops the byte
    # order mark Excel writes, which would otherwise turn the header "id" into "\ufeffid".
    text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
    if spec.fmt == "tsv":  # IANA TSV: no quoting, so a stray quote never merges rows
        reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:  # strict: a quote that never closes is an error, not the rest of the file in one field
        reader = csv.reader(text, strict=True)
    header = next(reader, None)
    if header is None:
        return
    for name in (spec.text_field, spec.id_field):
        if name is not None and name not in header:
            raise InputError(
                f"{spec.path}: no column {name!r} in the header (columns: {', '.join(header)}); "
                "name the right one with --text-field / --id-field"
            )
    start = reader.line_num + 1
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as e:  # broken quoting: the file cannot be read past this record
            raise InputError(
                f"{spec.path}: the record starting at line {start} is not valid CSV ({e}); "
                "a quote that opens there may never close. Nothing was written; fix the file"
            ) from None
        line, start = start, reader.line_num + 1
        if not row:
            yield Record(line, line, None, "empty line")
        elif len(row) != len(header):
            yield Record(line, line, None, f"has {len(row)} fields, the header has {len(header)}")
        else:
            yield fields_record(spec, line, dict(zip(header, row, strict=True)))


def _parquet(spec: InputSpec) -> Iterator[Record]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise missing_extra("pyarrow", "jobs") from None
    try:
        pf = pq.ParquetFile(spec.path)
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{spec.path} is not a readable parquet file: {e}") from None
    schema = pf.schema_arrow
    columns = [c for c in (spec.text_field, spec.id_field) if c is not None]
    for name in columns:
        if name not in schema.names:
            raise InputError(
                f"{spec.path}: no column {name!r} (columns: {', '.join(schema.names)}); "
                "name the right one with --text-field / --id-field"
            )
    kind = schema.field(spec.text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(f"{spec.path}: column {spec.text_field!r} is {kind}, expected string")
    row = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
        data = batch.to_pydict()
        texts = data[spec.text_field]
        id_field = spec.id_field
        ids = data[id_field] if id_field is not None else None
        for i, text in enumerate(texts):
            row += 1
            fields: dict[str, Any] = {spec.text_field: text}
            if id_field is not None and ids is not None:
                fields[id_field] = ids[i]
            yield fields_record(spec, row, fields)
