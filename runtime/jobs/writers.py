"""Output writers for batch jobs: a shard of rows to a file, and shards assembled into the output.

    fmt = output_writer("out.parquet", None, string_ids=False, dim=384)
    fmt.write_shard(f, ids, embeddings, tokens)      # one fixed range of rows
    fmt.assemble(shard_paths, dest, rows=n)           # all shards, in order, into one file

.npy: float32 [rows, dim] (numpy's format; np.load reads it, mmap_mode="r" included).
.parquet: columns id (int64 line numbers, or string ids from the input), embedding
(fixed_size_list<float32>[dim]) and tokens (int32: tokens the model saw, after truncation).
Assembly streams one shard at a time, so memory stays at one shard whatever the output size.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

import numpy as np

from ..errors import ConfigError, missing_extra
from .readers import RowId

FORMATS = ("npy", "parquet")


class ShardWriter(Protocol):
    """What the job needs of an output format: a name and suffix, one shard written, and the
    shards assembled into the output."""

    name: str
    suffix: str

    def write_shard(
        self, f: IO[bytes], ids: Sequence[RowId], embeddings: np.ndarray, tokens: np.ndarray
    ) -> None: ...

    def assemble(self, shards: Sequence[Path], dest: IO[bytes], rows: int) -> None: ...


def output_writer(path: str | Path, fmt: str | None, *, string_ids: bool, dim: int) -> ShardWriter:
    """The writer for an output path; fmt None takes the format from the suffix."""
    if fmt is None:
        fmt = Path(path).suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise ConfigError(
                f"cannot tell the output format from {str(path)!r}: name it .npy or .parquet, "
                "or pass --format npy|parquet"
            )
    if fmt == "npy":
        return NpyWriter(dim)
    if fmt == "parquet":
        return ParquetWriter(dim, string_ids)
    raise ConfigError(f"output format {fmt!r} is not one of {', '.join(FORMATS)}")


class NpyWriter:
    """Embeddings only (row i of the output is the i-th embedded input row); ids are not stored."""

    name = "npy"
    suffix = ".npy"

    def __init__(self, dim: int):
        self.dim = dim

    def write_shard(
        self, f: IO[bytes], ids: Sequence[RowId], embeddings: np.ndarray, tokens: np.ndarray
    ) -> None:
        np.lib.format.write_array(
            f, np.ascontiguousarray(embeddings, dtype=np.float32), allow_pickle=False
        )

    def assemble(self, shards: Sequence[Path], dest: IO[bytes], rows: int) -> None:
        # The header needs the final shape, which is known here: all shards exist. The data of
        # each shard is then copied raw after the header, never loaded whole.
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
            "fortran_order": False,
            "shape": (rows, self.dim),
        }
        np.lib.format.write_array_header_1_0(dest, header)
        seen = 0
        for path in shards:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read(f)
                if fortran or dtype != np.dtype("<f4") or len(shape) != 2 or shape[1] != self.dim:
                    raise ConfigError(
                        f"shard {path} holds {dtype} {shape}, expected float32 [n, {self.dim}]"
                    )
                shutil.copyfileobj(f, dest, 1 << 20)
                seen += shape[0]
        if seen != rows:
            raise ConfigError(f"shards hold {seen} rows, expected {rows}")


class ParquetWriter:
    """id + embedding (fixed_size_list<float32>) + tokens; each shard becomes one row group."""

    name = "parquet"
    suffix = ".parquet"

    def __init__(self, dim: int, string_ids: bool):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise missing_extra("pyarrow", "jobs") from None
        self._pa, self._pq = pa, pq
        self.dim = dim
        self.schema = pa.schema(
            [
                ("id", pa.string() if string_ids else pa.int64()),
                ("embedding", pa.list_(pa.float32(), dim)),
                ("tokens", pa.int32()),
            ]
        )
        # Embeddings are incompressible floats: compressing or dictionary-encoding them costs CPU
        # that inference needs and saves nothing; ids and token counts compress well.
        self._options = dict(
            compression={"id": "snappy", "embedding": "none", "tokens": "snappy"},
            use_dictionary=False,
            write_statistics=["id", "tokens"],
        )

    def write_shard(
        self, f: IO[bytes], ids: Sequence[RowId], embeddings: np.ndarray, tokens: np.ndarray
    ) -> None:
        pa = self._pa
        flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1))
        table = pa.Table.from_arrays(
            [
                pa.array(ids, self.schema.field("id").type),
                pa.FixedSizeListArray.from_arrays(flat, self.dim),
                pa.array(np.asarray(tokens, dtype=np.int32)),
            ],
            schema=self.schema,
        )
        self._pq.write_table(table, f, **self._options)

    def assemble(self, shards: Sequence[Path], dest: IO[bytes], rows: int) -> None:
        seen = 0
        with self._pq.ParquetWriter(dest, self.schema, **self._options) as writer:
            for path in shards:
                table = self._pq.read_table(path, schema=self.schema)
                seen += table.num_rows
                if table.num_rows:
                    writer.write_table(table, row_group_size=table.num_rows)
        if seen != rows:
            raise ConfigError(f"shards hold {seen} rows, expected {rows}")
