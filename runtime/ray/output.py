"""The Ray job's output: checked before the job runs (never the input or inside it; replaced
only with --overwrite, and only if it holds parquet files alone), written empty for an empty
input, counted once written, removed when the run fails, and the skipped-rows file copied to
where it was asked for.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .input import resolve_path


def check_apart(source: str, output: str, skipped: str | None) -> None:
    """Nothing the job writes (or replaces) may be, hold, or sit inside its input. Paths are
    compared as given with their scheme (s3://b/x and ./b/x are not the same place); local ones
    with links resolved."""

    def where(path: str) -> str:
        return path.rstrip("/") if "://" in path else os.path.realpath(path)

    src = where(source)
    for what, path in (("output", output), ("skipped-rows file", skipped)):
        if path is None:
            continue
        dst = where(path)
        if dst == src or dst.startswith(src + "/") or src.startswith(dst + "/"):
            raise ConfigError(
                f"the {what} {path!r} is or holds the input {source!r}; name another one"
            )


def check_output(fs: Any, path: str, overwrite: bool, shown: Any) -> bool:
    """Whether an existing output is to be replaced; ConfigError if it may not be."""
    import pyarrow.fs as pafs

    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        return False
    if not overwrite:
        raise ConfigError(f"{os.fspath(shown)} exists; pass --overwrite to replace it")
    if info.type == pafs.FileType.Directory and not _looks_like_output(fs, path):
        raise ConfigError(
            f"{os.fspath(shown)} is a directory holding more than parquet files; "
            "not replacing it, name another output"
        )
    return True


def _looks_like_output(fs: Any, path: str) -> bool:
    # --overwrite replaces an earlier output, never a directory of someone's other files.
    import pyarrow.fs as pafs

    found = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return all(f.type == pafs.FileType.Directory or f.path.endswith(".parquet") for f in found)


def write_empty(fs: Any, path: str, dim: int, string_ids: bool) -> None:
    import numpy as np

    from ..jobs.writers import ParquetWriter

    fs.create_dir(path)
    with fs.open_output_stream(path + "/part-000000.parquet") as f:
        ParquetWriter(dim, string_ids).write_shard(
            f, [], np.empty((0, dim), np.float32), np.empty(0, np.int32)
        )


def count_output(fs: Any, path: str) -> tuple[int, int]:
    """(rows, tokens) of the written output, from its small tokens column."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    table = pads.dataset(path, filesystem=fs, format="parquet").to_table(columns=["tokens"])
    return table.num_rows, int(pc.sum(table["tokens"]).as_py() or 0)


def remove(fs: Any, path: str) -> None:
    import pyarrow.fs as pafs

    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pafs.FileType.File:  # e.g. the local job's single-file output
        fs.delete_file(path)


def put(local: Path, dest: str) -> None:
    fs, path = resolve_path(dest)
    with open(local, "rb") as src, fs.open_output_stream(path) as out:
        shutil.copyfileobj(src, out, 1 << 20)
