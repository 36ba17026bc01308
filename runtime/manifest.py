"""The artifact manifest (embedrt.json): what is in an artifact directory, and its checks.

An artifact is a directory holding tokenizer.json, one or more ONNX variants and this manifest.
The manifest records every file with its sha256; loading refuses a file that is missing, whose
hash differs, or whose path leaves the directory. The export step writes it; the runtime reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelLoadError

MANIFEST_NAME = "embedrt.json"
FORMAT_VERSION = 1
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


@dataclass(frozen=True)
class FileEntry:
    """A file of the artifact, relative to its directory, with its sha256 (hex)."""

    file: str
    sha256: str


@dataclass(frozen=True)
class Variant:
    """One ONNX graph of the artifact.

    name: how users and the manifest refer to it ("fp32", "opt", "fp16", "int8").
    precision: the arithmetic of the graph's weights; the graph's I/O is always int64 in, fp32 out.
    providers: the execution providers it is meant for, best first.
    quality: figures measured at export (parity against sentence-transformers, Spearman, ...).
    """

    name: str
    file: str
    sha256: str
    precision: str
    providers: tuple[str, ...]
    fused_ops: dict[str, int] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


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
    if fmt != FORMAT_VERSION:
        raise ValueError(f"format {fmt!r} is not supported (this embedrt reads {FORMAT_VERSION})")
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
        format=fmt,
    )


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


def verified_bytes(directory: str | Path, entry: FileEntry | Variant) -> bytes:
    """A (small) manifest file's bytes, read through the descriptor that was hashed."""
    with verified_file(directory, entry) as path:
        return Path(path).read_bytes()


@contextlib.contextmanager
def verified_file(directory: str | Path, entry: FileEntry | Variant) -> Iterator[str]:
    """A path to a manifest file that reads exactly the bytes whose sha256 matched, for as long
    as the context lasts: the file is opened once, hashed through that descriptor, and handed
    on as /proc/self/fd/N (Linux), so a file renamed or replaced meanwhile is not what loads;
    one written in place is caught at exit (its size, mtime or ctime changed). Unlike reading the bytes into
    Python, this costs no second copy of a large model in memory."""
    path = Path(directory) / entry.file
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO in its place must not hang
    except FileNotFoundError:
        raise ModelLoadError(
            f"artifact file {entry.file!r} is missing from {str(directory)!r}"
        ) from None
    except OSError as e:
        raise ModelLoadError(f"artifact file {entry.file!r} cannot be read: {e.strerror}") from None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise ModelLoadError(f"artifact file {entry.file!r} is not a regular file")
        digest = hashlib.sha256()
        with os.fdopen(os.dup(fd), "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        _check_sha256(entry, digest.hexdigest())
        proc = Path(f"/proc/self/fd/{fd}")
        yield str(proc) if proc.exists() else str(path)
        after = os.fstat(fd)
        if not proc.exists():  # loaded by path: it must still be the file that was hashed
            now = os.stat(path)
            if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
                raise ModelLoadError(
                    f"artifact file {entry.file!r} was replaced while it was loaded; load again"
                )
        # Writes change the size or mtime; a write hidden by resetting mtime still changes the
        # ctime, which also changes when the file is renamed away (then its link count does).
        hidden = after.st_ctime_ns != before.st_ctime_ns and after.st_nlink == before.st_nlink
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or hidden:
            raise ModelLoadError(
                f"artifact file {entry.file!r} changed while it was loaded; load again"
            )
    finally:
        os.close(fd)


def _check_sha256(entry: FileEntry | Variant, got: str) -> None:
    if got != entry.sha256:
        raise ModelLoadError(
            f"artifact file {entry.file!r} is corrupted: sha256 {got[:16]}... does not match "
            f"the manifest's {entry.sha256[:16]}...; re-export or re-copy the artifact"
        )
