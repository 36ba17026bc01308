"""Encoder: texts in, L2-normalized sentence embeddings out, on the best provider available.

    enc = Encoder.load("artifacts/all-MiniLM-L6-v2")          # device="auto", precision="auto"
    vecs = enc.encode(["A man plays a guitar.", "Someone plays music."])   # float32 (2, 384)

The artifact's graph does pooling and normalization itself; the encoder tokenizes, sorts texts
by token length, pads each batch to its own longest row, runs it, and restores input order.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .batching import (
    GPU_PAD_MULTIPLE,
    GPU_RUN_COST,
    BatchPlan,
    cpu_run_tokens,
    plan_batches,
)
from .config import check_choice, check_int
from .errors import ConfigError, ModelLoadError, ProviderError
from .malloc import model_load
from .manifest import Manifest, load_manifest, tables_record
from .providers import TensorRTProfile, auto_devices, provider_list, resolve_device
from .runner import EncodeStats, Rows, Runner
from .session import (
    Session,
    SessionOptions,
    available_providers,
    default_threads,
    spinning_mode,
)
from .streams import Streams, stream_count
from .tokenizer import TextTokenizer, as_text_list
from .variants import PRECISIONS, choose_variant, manifest_variant
from .vectors import similarity
from .verified import verified_bytes, verified_file, verified_tables

DEFAULT_TRT_CACHE = Path.home() / ".cache" / "embedrt" / "tensorrt"
log = logging.getLogger("embedrt")


# Padded tokens per batch: above this one batch's activations alone would outgrow any machine
# this runs on (MiniLM: ~100 MB at the default 16384).
MAX_BATCH_TOKENS = 1 << 20
MAX_BATCH_SIZE = 1 << 16
# TensorRT tunes its kernels for this batch shape (rows x tokens): the batcher's common case.
TRT_OPT_BATCH, TRT_OPT_SEQ = 32, 64


@dataclass(frozen=True)
class _LoadOptions:
    """Encoder.load's options, checked once and carried to each device tried."""

    precision: str
    threads: int | None
    spinning: str  # already a SPINNING mode (spinning_mode), checked again by SessionOptions
    streams: int | None
    batch_tokens: int
    cache_dir: Path
    variant: str | None

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        cpus = default_threads()
        check_int(
            "threads",
            self.threads,
            most=cpus,
            none=True,
            why=f": this process may use {cpus} CPUs",
        )
        check_int("streams", self.streams, most=cpus, none=True)
        check_int("batch_tokens", self.batch_tokens, most=MAX_BATCH_TOKENS)
        if self.variant is not None and not isinstance(self.variant, str):
            raise ConfigError(f"variant must be a variant's name or None, got {self.variant!r}")


@dataclass(frozen=True)
class EncoderInfo:
    """What was loaded and where it runs."""

    path: str
    device: str
    precision: str
    variant: str
    file: str
    active_providers: tuple[str, ...]
    dim: int
    max_seq_length: int
    streams: int = 1


class Encoder:
    """A loaded artifact: its tokenizer and a Runner over its ONNX Runtime sessions.
    Thread-safe for concurrent encode()."""

    def __init__(
        self, manifest: Manifest, tokenizer: TextTokenizer, runner: Runner, info: EncoderInfo
    ):
        self.manifest = manifest
        self.info = info
        self.runner = runner
        self._tokenizer = tokenizer

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        precision: str = "auto",
        *,
        threads: int | None = None,
        spinning: str | bool = SessionOptions.spinning,
        streams: int | None = None,
        batch_tokens: int = BatchPlan.max_tokens,
        cache_dir: str | Path | None = None,
        variant: str | None = None,
    ) -> Encoder:
        """Load an artifact directory, verifying every file it reads against the manifest.

        device: auto | cpu | cuda | tensorrt. precision: auto | fp32 | fp16 | int8.
        threads: ONNX Runtime intra-op threads, from 1 to the CPUs this process may use (more is
            refused: oversubscribed threads only fight each other); None = all of them.
        spinning: how ONNX Runtime's threads wait for work: "run" (default) spin-waits only
            while a run is in flight, "on" also between runs, "off" never (True / False are
            "on" / "off"; see session.SPINNING).
        streams: CPU only: calls with at least this many batches run this many at once, each on
            threads/streams cores, on a second session (one more copy of the weights:
            streams.py); None = one per thread, at most 8, for a graph of at most 64 MB (its files together)
            (a small model's int8), else 1; 1 = every batch on all threads, one after another.
        batch_tokens: padded tokens per batch (rows x longest row), bounding memory; at most
            MAX_BATCH_TOKENS. On the CPU a batch also holds at most what keeps the graph's
            widest activation under batching.CPU_ACTIVATION_FLOATS (512 tokens for MPNet).
        cache_dir: TensorRT engine/timing caches (default: ~/.cache/embedrt/tensorrt; the
            artifact directory may be read-only). Entries are keyed by the variant's sha256.
        variant: load this variant by name (e.g. "opt"), overriding precision.
        """
        options = _LoadOptions(
            precision,
            threads,
            spinning_mode(spinning),
            streams,
            batch_tokens,
            Path(cache_dir) if cache_dir else DEFAULT_TRT_CACHE,
            variant,
        )
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(
                f"path must be an artifact directory (str or path), got {type(path).__name__}"
            )
        path = Path(path)
        manifest = load_manifest(path)
        available = available_providers()
        if device != "auto":
            return cls._load_on(path, manifest, resolve_device(device, available), options)
        # auto: TensorRT > CUDA > CPU among what ONNX Runtime offers. A GPU build lists TensorRT
        # even where its libraries are missing and then silently runs CUDA: fall through.
        devices = auto_devices(available)
        for i, candidate in enumerate(devices):
            try:
                return cls._load_on(path, manifest, candidate, options)
            except ProviderError as e:
                if i == len(devices) - 1:
                    raise
                log.warning("device %s is not usable (%s); trying %s", candidate, e, devices[i + 1])
        raise ProviderError(f"ONNX Runtime offers no usable provider; available: {available}")

    @classmethod
    def _load_on(cls, path: Path, manifest: Manifest, device: str, o: _LoadOptions) -> Encoder:
        variant = (
            manifest_variant(manifest, o.variant)
            if o.variant
            else choose_variant(manifest, device, o.precision)
        )
        tokenizer = TextTokenizer.from_bytes(
            verified_bytes(path, manifest.tokenizer),
            manifest.tokenizer.file,
            manifest.max_seq_length,
            manifest.do_lower_case,
        )
        gpu = device != "cpu"
        plan = (
            BatchPlan(max_tokens=cpu_run_tokens(o.batch_tokens, manifest.activation_width))
            if not gpu
            else BatchPlan(
                max_tokens=o.batch_tokens,
                pad_multiple=GPU_PAD_MULTIPLE,
                run_cost=GPU_RUN_COST,
                max_cells=None,
            )
        )
        fp16 = variant.precision == "fp16" or (
            device == "tensorrt" and o.precision in ("auto", "fp16")
        )
        providers = provider_list(
            device,
            variant_sha256=variant.sha256,
            inputs=manifest.inputs,
            cache_dir=o.cache_dir,
            profile=TensorRTProfile(
                max_batch=max(1, o.batch_tokens // GPU_PAD_MULTIPLE),
                max_seq=plan.padded(manifest.max_seq_length),
                opt_batch=TRT_OPT_BATCH,
                opt_seq=TRT_OPT_SEQ,
            ),
            fp16=fp16,
        )

        tables = verified_tables(path, variant)  # one copy, for every session

        def session_with(options: SessionOptions) -> Session:  # each loads the verified file
            with verified_file(path, variant) as model:
                return Session(
                    model,
                    variant.file,
                    device,
                    providers,
                    options,
                    manifest.output,
                    manifest.dim,
                    tables,
                    str(path),
                    tables_record(variant.data, variant.tables),
                )

        session = session_with(SessionOptions(o.threads, o.spinning))
        streams = None
        if device == "cpu":
            threads = o.threads or default_threads()
            size = sum((path / f).stat().st_size for f in variant.files)
            count = stream_count(o.streams, threads, size)
            if count > 1:
                per_stream = SessionOptions(threads // count, o.spinning)
                streams = Streams(count, lambda: session_with(per_stream))  # made on first use
        info = EncoderInfo(
            path=str(path),
            device=device,
            precision="fp16" if fp16 else variant.precision,
            variant=variant.name,
            file=variant.file,
            active_providers=tuple(session.active_providers),
            dim=manifest.dim,
            max_seq_length=manifest.max_seq_length,
            streams=streams.count if streams else 1,
        )
        runner = Runner(session, plan, manifest.dim, manifest.pad_token_id, streams)
        # On the CPU the probe's blocks are their own mappings, so that shrink unmaps them.
        with model_load() if device == "cpu" else contextlib.nullcontext():
            _probe(runner, tokenizer, variant.file, device)
        return cls(manifest, tokenizer, runner, info)

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def tokenizer(self) -> TextTokenizer:
        """The artifact's tokenizer (thread-safe): the server's TEI routes use it directly."""
        return self._tokenizer

    def encode(
        self,
        texts: str | Iterable[str],
        batch_size: int = 32,
        stats: EncodeStats | None = None,
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        dimensions: int | None = None,
    ) -> np.ndarray:
        """Embeddings of texts: float32 [len(texts), dim], or [dim] for a single string.

        As SentenceTransformer.encode with the same arguments: prompt (a text) or prompt_name
        (one of the model's prompts) is prepended to every text, the model's default prompt when
        neither is given; dimensions keeps the first k floats (sentence-transformers'
        truncate_dim, for Matryoshka models: not renormalized). Texts longer than
        max_seq_length tokens are truncated, as sentence-transformers does.
        batch_size caps rows per batch; the token budget given at load caps padded tokens.
        stats, if given, is incremented with rows, batches, real and padded tokens.
        """
        check_int("dimensions", dimensions, most=self.dim, none=True)
        prompted = self.apply_prompt(as_text_list(texts), prompt_name, prompt)
        vectors = self.encode_tokens(self.tokenize(prompted), batch_size, stats)
        out = self.truncate(vectors, dimensions)
        return out[0] if isinstance(texts, str) else out

    def encode_query(self, texts: str | Iterable[str], **kwargs: Any) -> np.ndarray:
        """encode() with the model's "query" prompt (none if it has none), as
        sentence-transformers' encode_query: the default prompt does not apply."""
        return self._encode_as("query", texts, **kwargs)

    def encode_document(self, texts: str | Iterable[str], **kwargs: Any) -> np.ndarray:
        """encode() with the model's "document" prompt (none if it has none), as
        sentence-transformers' encode_document: the default prompt does not apply."""
        return self._encode_as("document", texts, **kwargs)

    def _encode_as(self, task: str, texts: str | Iterable[str], **kwargs: Any) -> np.ndarray:
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None:
            kwargs["prompt"] = self.manifest.prompts.get(task, "")
        return self.encode(texts, **kwargs)

    def apply_prompt(
        self, texts: list[str], prompt_name: str | None = None, prompt: str | None = None
    ) -> list[str]:
        """texts with the prompt prepended: prompt if given, else the model's prompt named
        prompt_name, else its default prompt (if any). ConfigError for an unknown name."""
        text = resolve_prompt(self.manifest, prompt_name, prompt)
        return [text + t for t in texts] if text else texts

    def truncate(self, vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
        """The first `dimensions` floats of each vector (all of them for None); ConfigError
        unless 1 <= dimensions <= dim."""
        check_int("dimensions", dimensions, most=self.dim, none=True)
        return vectors if dimensions is None else np.ascontiguousarray(vectors[..., :dimensions])

    def tokenize(self, texts: str | Iterable[str]) -> list[list[int]]:
        """Token ids per text (truncated, special tokens included), for encode_tokens()."""
        return self._tokenizer.tokenize(as_text_list(texts))

    def encode_tokens(
        self, rows: Rows, batch_size: int = 32, stats: EncodeStats | None = None
    ) -> np.ndarray:
        """Embeddings of already tokenized rows (see tokenize), float32 [len(rows), dim].

        Rows are sorted by length, batched by the token budget and batch_size, each batch
        padded to its own longest row, and the output is returned in input order.
        """
        check_int("batch_size", batch_size, most=MAX_BATCH_SIZE)
        plan = replace(self.runner.plan, max_rows=batch_size)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        for idx, vecs in self.runner.run_planned(rows, plan_batches(lengths, plan), stats):
            out[idx] = vecs
        return out

    def count_tokens(self, texts: str | Iterable[str], truncate: bool = True) -> np.ndarray:
        """Tokens per text, special tokens included (int64 [len(texts)]); with truncate=False
        the count the text would have without max_seq_length (to tell whether it is cut): for
        a text many times longer, a lower bound already well past max_seq_length."""
        if not truncate:
            return np.array(
                self._tokenizer.untruncated_lengths(as_text_list(texts)), dtype=np.int64
            )
        rows = self.tokenize(texts)
        return np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Similarity matrix [len(a), len(b)] by the model's similarity function (cosine unless
        its sentence-transformers config names dot, euclidean or manhattan), as
        SentenceTransformer.similarity; 1-D inputs count as one row."""
        return similarity(a, b, self.manifest.similarity_fn)

    def describe(self) -> dict[str, Any]:
        return {
            **self.info.__dict__,
            "active_providers": list(self.info.active_providers),
            "available_providers": available_providers(),
        }


def resolve_prompt(manifest: Manifest, prompt_name: str | None, prompt: str | None) -> str:
    """The prompt text a call gets, as sentence-transformers resolves it: prompt if given (a
    prompt_name beside it is ignored, with a warning), else the prompt named prompt_name, else
    the model's default prompt, else none ("")."""
    if prompt is not None:
        if prompt_name is not None:
            log.warning("both prompt and prompt_name given: prompt_name %r is ignored", prompt_name)
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
        return prompt
    name = prompt_name if prompt_name is not None else manifest.default_prompt_name
    if name is None:
        return ""
    if not isinstance(name, str) or name not in manifest.prompts:
        known = ", ".join(map(repr, manifest.prompts)) or "none"
        raise ConfigError(f"prompt_name {name!r} is not one of the model's prompts ({known})")
    return manifest.prompts[name]


def _probe(runner: Runner, tokenizer: TextTokenizer, name: str, device: str) -> None:
    """Run one text of max_seq_length tokens: a manifest whose dim or max_seq_length the graph
    cannot honour fails here, at load, as ModelLoadError, not at a user's first encode. The
    memory that run took goes back (shrink): kept, it was 40 MB of MPNet's resident memory
    that a workload of short texts never needs (docs/decisions.md)."""
    rows = tokenizer.tokenize(["embedrt load check " * tokenizer.max_length])
    try:
        vecs = runner.run(rows, shrink=True)
    except Exception as e:  # onnxruntime's own exception types
        # On a GPU a failing first run may be the device (auto then tries the next one).
        kind = ModelLoadError if device == "cpu" else ProviderError
        raise kind(
            f"{name!r} cannot encode a text of {len(rows[0])} tokens (the manifest's "
            f"max_seq_length {tokenizer.max_length}): {type(e).__name__}: {str(e)[:300]}"
        ) from None
    if vecs.shape != (1, runner.dim) or not np.isfinite(vecs).all():
        raise ModelLoadError(
            f"{name!r} gives {vecs.shape} for one text, expected (1, {runner.dim})"
            " finite floats: the manifest does not match the graph"
        )
