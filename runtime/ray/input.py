"""Parquet input of the Ray job: listed on the driver, read by Ray tasks, rows numbered as the local job does.

    source = list_source("s3://bucket/texts/", text_field="text", id_field=None)
    frags = ray.data.from_items(source.fragments)            # one item per row group
    rows = frags.map_batches(read_rows, batch_size=1, fn_kwargs=source.read_kwargs("embed", 1024))

Why not ray.data.read_parquet: the local job names rows by their 1-based row number (the ids of
its output when no id field is given, and the row named in a bad-row error), and Ray's reader
does not know a row's position. Parquet footers do: the driver reads them (threads, footers
only) and gives each row group its first row, so every task numbers its rows exactly. Paths
are local or any URI pyarrow's filesystems open (s3://, gs://, hdfs://, abfs://, file://),
the same layer Ray Data reads through. A directory is read as its .parquet files in sorted
path order, rows numbered on across files; a file's rows are checked by the local job's rules
(readers.py), so both paths accept, refuse and word bad rows alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, missing_extra
from ..jobs.readers import InputSpec, fields_record

FOOTER_THREADS = 16  # footers are small reads: on object stores latency, not bandwidth, bounds them


def resolve_path(path: str | os.PathLike) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for a local path or a URI."""
    try:
        import pyarrow.fs as pafs
    except ImportError:
        raise missing_extra("pyarrow", "ray") from None
    text = os.fspath(path)
    if "://" in text:
        try:
            return pafs.FileSystem.from_uri(text)
        except Exception as e:  # pyarrow raises ArrowInvalid / OSError for an unknown scheme
            raise InputError(f"cannot open {text!r}: {e}") from None
    return pafs.LocalFileSystem(), os.path.abspath(text)


@dataclass(frozen=True)
class Source:
    """The input's files and row groups: fragments are dicts (Ray items) in row order."""

    filesystem: Any
    files: tuple[str, ...]
    fragments: tuple[dict[str, Any], ...]
    rows: int
    text_field: str
    id_field: str | None

    def read_kwargs(self, mode: str, batch_rows: int) -> dict[str, Any]:
        """fn_kwargs of read_rows: mode embed (good rows) or scan (bad rows only)."""
        return {
            "filesystem": self.filesystem,
            "text_field": self.text_field,
            "id_field": self.id_field,
            "mode": mode,
            "batch_rows": batch_rows,
            "many_files": len(self.files) > 1,
        }


def list_source(path: str | os.PathLike, text_field: str, id_field: str | None) -> Source:
    """Files and row groups of a parquet file or directory; InputError if a file cannot be used."""
    fs, root = resolve_path(path)
    import pyarrow.fs as pafs

    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"input {os.fspath(path)!r} does not exist")
    if info.type == pafs.FileType.Directory:
        found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        files = sorted(f.path for f in found if f.type == pafs.FileType.File and _data_file(f.path))
        if not files:
            raise InputError(f"input directory {os.fspath(path)!r} holds no .parquet files")
    else:
        if not info.path.lower().endswith(".parquet"):
            raise InputError(
                f"--ray reads parquet; {os.fspath(path)!r} is not a .parquet file "
                "(run without --ray for txt, jsonl, csv and tsv)"
            )
        files = [root]
    with ThreadPoolExecutor(min(FOOTER_THREADS, len(files))) as pool:
        groups = list(pool.map(lambda f: _row_groups(fs, f, text_field, id_field), files))
    fragments, first = [], 0
    for file, sizes in zip(files, groups, strict=True):
        file_first = 0
        for g, n in enumerate(sizes):
            if n:
                fragments.append(
                    {"path": file, "row_group": g, "first_row": first, "file_first": file_first}
                )
            first += n
            file_first += n
    return Source(fs, tuple(files), tuple(fragments), first, text_field, id_field)


def _data_file(path: str) -> bool:
    # Hidden and underscore files are metadata (_SUCCESS, _common_metadata, .crc), as in Spark/Arrow.
    name = path.rsplit("/", 1)[-1]
    return name.lower().endswith(".parquet") and not name.startswith((".", "_"))


def _row_groups(fs: Any, path: str, text_field: str, id_field: str | None) -> list[int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as f:
            meta = pq.ParquetFile(f).metadata
            schema = meta.schema.to_arrow_schema()
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"{path} is not a readable parquet file: {e}") from None
    for name in (text_field, id_field):
        if name is not None and name not in schema.names:
            raise InputError(
                f"{path}: no column {name!r} (columns: {', '.join(schema.names)}); "
                "name the right one with --text-field / --id-field"
            )
    kind = schema.field(text_field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise InputError(f"{path}: column {text_field!r} is {kind}, expected string")
    return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]


def read_rows(
    batch: Any,
    *,
    filesystem: Any,
    text_field: str,
    id_field: str | None,
    mode: str,
    batch_rows: int,
    many_files: bool,
) -> Iterator[Any]:
    """map_batches fn over fragments (batch_size=1): yields arrow tables of at most batch_rows.

    embed: columns id (int64 row number, or string id) and text, good rows only.
    scan: columns row, reason, where (the row named as the local job names it), bad rows only.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    for frag in batch.to_pylist():
        columns = [c for c in (text_field, id_field) if c is not None]
        with filesystem.open_input_file(frag["path"]) as f:
            table = pq.ParquetFile(f).read_row_group(frag["row_group"], columns=columns)
        spec = InputSpec(Path(frag["path"]), "parquet", text_field=text_field, id_field=id_field)
        for start in range(0, table.num_rows, batch_rows):
            data = table.slice(start, batch_rows).to_pydict()
            texts, ids = data[text_field], data[id_field] if id_field else None
            out: dict[str, list[Any]] = (
                {"id": [], "text": []}
                if mode == "embed"
                else {"row": [], "reason": [], "where": []}
            )
            for i, text in enumerate(texts):
                file_row = frag["file_first"] + start + i + 1
                fields: dict[str, Any] = {text_field: text}
                if id_field is not None and ids is not None:
                    fields[id_field] = ids[i]
                rec = fields_record(spec, file_row, fields)
                row = frag["first_row"] + start + i + 1
                if mode == "embed" and rec.error is None:
                    out["id"].append(row if id_field is None else rec.id)
                    out["text"].append(rec.text)
                elif mode == "scan" and rec.error is not None:
                    out["row"].append(row)
                    out["reason"].append(rec.error)
                    out["where"].append(
                        f"{frag['path']} row {file_row}"
                        + (f" (row {row} of the input)" if many_files else "")
                    )
            if mode == "embed":
                id_type = pa.int64() if id_field is None else pa.string()
                yield pa.table(
                    {"id": pa.array(out["id"], id_type), "text": pa.array(out["text"], pa.string())}
                )
            elif out["row"]:
                yield pa.table(
                    {
                        "row": pa.array(out["row"], pa.int64()),
                        "reason": out["reason"],
                        "where": out["where"],
                    }
                )
