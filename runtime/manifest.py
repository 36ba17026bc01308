"""The artifact manifest (embedrt.json): what is in an artifact directory, and its checks.

An artifact is a directory holding tokenizer.json, one or more ONNX variants and this manifest.
A variant may keep its token tables (the word-embedding matrix a Gather reads by input_ids) in a
second file, ONNX external data that the runtime reads itself (verified.py, session.py). The
manifest records every file with its sha256; loading (verified.py) refuses a file that is
missing, whose hash differs, or whose path leaves the directory. The export step writes it; the
runtime reads it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

MANIFEST_NAME = "embedrt.json"
# 2: a variant may have token tables in a data file (Variant.data, Variant.tables); an embedrt
# that reads only 1 would hand such a graph to ONNX Runtime without its tables.
FORMAT_VERSION = 2
FORMATS_READ = (1, 2)
PRECISIONS = ("fp32", "fp16", "int8")
# sentence-transformers' pooling modes; a manifest's pooling is one of them or several joined
# with "+" (concatenated in this order, as sentence-transformers' Pooling does).
POOLINGS = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
# sentence-transformers' similarity_fn_name values (SimilarityFunction).
SIMILARITY_FNS = ("cosine", "dot", "euclidean", "manhattan")
# Bounds of a manifest's numbers: far beyond any real model, small enough that a tampered value
# fails here, named, instead of as a numpy or ONNX Runtime error at the first encode.
MAX_DIM = 1 << 16
MAX_SEQ_LENGTH = 1 << 17
MAX_MANIFEST_BYTES = 1 << 24
# A table's element types as numpy names, with their sizes in bytes.
TABLE_DTYPES = {"float32": 4, "float16": 2, "int8": 1, "uint8": 1}
MAX_TABLE_BYTES = 1 << 40


@dataclass(frozen=True)
class FileEntry:
    """A file of the artifact, relative to its directory, with its sha256 (hex)."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Table:
    """A tensor of a variant's data file: the initializer `name` of the graph, `shape` elements
    of `dtype` (one of TABLE_DTYPES) starting `offset` bytes into the file."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * TABLE_DTYPES[self.dtype]


# The graph's own record of its data file and tables (ONNX metadata_props), which loading
# compares with the manifest's: ONNX Runtime takes a table of another type or shape than the
# graph declares without a word, so a manifest edited by hand would otherwise give wrong
# vectors. The data file's sha256 in it makes the graph's sha256 (TensorRT's engine cache key,
# a job's identity) stand for the tables too.
TABLES_METADATA_KEY = "embedrt.tables"


def tables_record(data: FileEntry | None, tables: tuple[Table, ...]) -> str:
    """The data file and tables as the graph's metadata records them (canonical JSON); "" for
    a graph that holds its tables (no record)."""
    if data is None:
        return ""
    listed = [[t.name, t.dtype, list(t.shape), t.offset] for t in tables]
    return json.dumps({"data_sha256": data.sha256, "tables": listed})


@dataclass(frozen=True)
class Variant:
    """One ONNX graph of the artifact.

    name: how users and the manifest refer to it ("fp32", "opt", "fp16", "int8").
    precision: the arithmetic of the graph's weights; the graph's I/O is always int64 in, fp32 out.
    providers: the execution providers it is meant for, best first.
    quality: figures measured at export (parity against sentence-transformers, Spearman, ...).
    data, tables: the file holding the graph's token tables as ONNX external data, and where
        each table lies in it; None and () when the graph holds all its weights.
    """

    name: str
    file: str
    sha256: str
    precision: str
    providers: tuple[str, ...]
    fused_ops: dict[str, int] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    data: FileEntry | None = None
    tables: tuple[Table, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """The variant's files in the artifact: the graph, then its data file if it has one."""
        return (self.file,) + ((self.data.file,) if self.data else ())


@dataclass(frozen=True)
class Manifest:
    """The contents of embedrt.json. Units: dim in floats, max_seq_length in tokens."""

    source: dict[str, Any]
    dim: int
    max_seq_length: int
    pooling: str
    normalize: bool
    do_lower_case: bool
    tokenizer: FileEntry
    variants: tuple[Variant, ...]
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    output: str = "sentence_embedding"
    opset: int = 17
    pad_token_id: int = 0
    tools: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # variant name -> why export refused it
    # The model's prompts (name -> text prepended before tokenizing) and the one applied when a
    # caller names none, as config_sentence_transformers.json has them.
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn: str = "cosine"
    # Floats per token of the graph's widest matrix product (the feed-forward's inner width):
    # what the CPU's per-run token bound is sized by (batching.cpu_run_tokens). None: unknown.
    activation_width: int | None = None
    format: int = FORMAT_VERSION

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write embedrt.json atomically (temporary file + rename)."""
    path = Path(directory) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    tmp.replace(path)
    return path


def load_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read and validate embedrt.json of an artifact directory (hashes are checked on use)."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not directory.is_dir():
        raise ModelLoadError(f"artifact directory {str(directory)!r} does not exist")
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing: {str(directory)!r} is not an embedrt artifact "
            "(create one with: embedrt export SRC_MODEL_DIR OUT_DIR)"
        )
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise ModelLoadError(f"{path} is {path.stat().st_size:,} bytes; a manifest is a few KB")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ModelLoadError(f"{path} is not valid JSON: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, a number of > 4300 digits
        raise ModelLoadError(f"{path} is not valid JSON: {e}") from None
    try:
        return _parse(raw, directory)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{path} is malformed: {type(e).__name__}: {e}") from None


def _parse(raw: dict[str, Any], directory: Path) -> Manifest:
    if not isinstance(raw, dict):
        raise TypeError("top level must be an object")
    fmt = raw.get("format")
    if fmt not in FORMATS_READ or isinstance(fmt, bool):
        raise ValueError(
            f"format {fmt!r} is not supported (this embedrt reads {list(FORMATS_READ)}): "
            "upgrade embedrt"
        )
    tok = raw["tokenizer"]
    tokenizer = FileEntry(file=_inside(directory, tok["file"]), sha256=str(tok["sha256"]))
    variants = []
    for v in raw["variants"]:
        if v["precision"] not in PRECISIONS:
            raise ValueError(
                f"variant {v['name']!r}: precision {v['precision']!r} not in {PRECISIONS}"
            )
        variants.append(
            Variant(
                name=str(v["name"]),
                file=_inside(directory, v["file"]),
                sha256=str(v["sha256"]),
                precision=v["precision"],
                providers=tuple(v.get("providers", ())),
                fused_ops=dict(v.get("fused_ops", {})),
                quality=dict(v.get("quality", {})),
                notes=str(v.get("notes", "")),
                **_data(v, directory),
            )
        )
    if not variants:
        raise ValueError("no variants")
    pooling = raw["pooling"]
    if not isinstance(pooling, str) or not set(pooling.split("+")) <= set(POOLINGS):
        raise ValueError(f"pooling {pooling!r}: each '+'-joined mode must be one of {POOLINGS}")
    prompts = raw.get("prompts", {})
    if not isinstance(prompts, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()
    ):
        raise ValueError("prompts must map prompt names to prompt texts (strings)")
    default_prompt = raw.get("default_prompt_name")
    if default_prompt is not None and default_prompt not in prompts:
        raise ValueError(f"default_prompt_name {default_prompt!r} is not one of the prompts")
    similarity_fn = raw.get("similarity_fn", "cosine")
    if similarity_fn not in SIMILARITY_FNS:
        raise ValueError(f"similarity_fn {similarity_fn!r} not in {SIMILARITY_FNS}")
    inputs = tuple(raw.get("inputs", ("input_ids", "attention_mask")))
    if inputs != ("input_ids", "attention_mask"):
        raise ValueError(f"inputs {list(inputs)!r}: this embedrt feeds input_ids, attention_mask")
    return Manifest(
        source=dict(raw.get("source", {})),
        dim=_count(raw, "dim", 1, MAX_DIM),
        max_seq_length=_count(raw, "max_seq_length", 1, MAX_SEQ_LENGTH),
        pooling=pooling,
        normalize=bool(raw["normalize"]),
        do_lower_case=bool(raw.get("do_lower_case", False)),
        tokenizer=tokenizer,
        variants=tuple(variants),
        inputs=inputs,
        output=_name(raw.get("output", "sentence_embedding"), "output"),
        opset=_count(raw, "opset", 1, 1000, default=17),
        pad_token_id=_count(raw, "pad_token_id", 0, 1 << 31, default=0),
        tools=dict(raw.get("tools", {})),
        refused=dict(raw.get("refused", {})),
        prompts=dict(prompts),
        default_prompt_name=default_prompt,
        similarity_fn=similarity_fn,
        activation_width=(
            None
            if raw.get("activation_width") is None
            else _count(raw, "activation_width", 1, MAX_DIM)
        ),
        format=fmt,
    )


def _data(raw: dict[str, Any], directory: Path) -> dict[str, Any]:
    """A variant's data file and tables (Variant.data, Variant.tables), checked: each table
    named once, of a known type, with a positive shape, aligned to its element size."""
    data, tables = raw.get("data"), raw.get("tables", [])
    if data is None and not tables:
        return {}
    if not isinstance(data, dict) or not isinstance(tables, list) or not tables:
        raise ValueError(f"variant {raw.get('name')!r}: data and tables come together")
    out = []
    for t in tables:
        if not isinstance(t, dict):
            raise ValueError(f"a table must be an object, got {t!r}"[:200])
        dtype = t.get("dtype")
        if dtype not in TABLE_DTYPES:
            raise ValueError(f"table dtype {dtype!r} not in {list(TABLE_DTYPES)}"[:200])
        shape = t.get("shape")
        if not isinstance(shape, list) or not 1 <= len(shape) <= 8:
            raise ValueError(f"table shape must be a list of 1 to 8 sizes, got {shape!r}"[:200])
        dims = tuple(_count({"shape": d}, "shape", 1, MAX_TABLE_BYTES) for d in shape)
        table = Table(
            _name(t.get("name"), "table name"), dtype, dims, _count(t, "offset", 0, MAX_TABLE_BYTES)
        )
        if table.nbytes > MAX_TABLE_BYTES or table.offset % TABLE_DTYPES[dtype]:
            raise ValueError(f"table {table.name!r}: too large or misaligned"[:200])
        out.append(table)
    if len({t.name for t in out}) != len(out):
        raise ValueError(f"variant {raw.get('name')!r}: a table is named twice")
    entry = FileEntry(file=_inside(directory, data.get("file", "")), sha256=str(data.get("sha256")))
    return {"data": entry, "tables": tuple(out)}


def _count(raw: dict[str, Any], key: str, least: int, most: int, default: int | None = None) -> int:
    """An integer field in [least, most] (a bool, a float or a huge number is not one)."""
    value = raw[key] if default is None else raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
        raise ValueError(f"{key} must be an integer from {least} to {most}, got {value!r}"[:200])
    return value


def _name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}"[:200])
    return value


def _inside(directory: Path, name: str) -> str:
    """Refuse a manifest path that is absolute or leaves the artifact directory."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"file name must be a non-empty string, got {name!r}")
    root = directory.resolve()
    target = (root / name).resolve()
    if Path(name).is_absolute() or not target.is_relative_to(root):
        raise ValueError(f"file {name!r} leaves the artifact directory; refusing to read it")
    return name
