"""Building an encoder on one device: the variant it loads, its files verified as they are read,
the sessions and streams, the batch plan, and the load check of one max_seq_length text (512
tokens at most).

Encoder.load (encoder.py) checks its options once (LoadOptions) and calls load_on for each
device it tries.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .batching import GPU_PAD_MULTIPLE, GPU_RUN_COST, BatchPlan, cpu_run_tokens
from .config import check_choice, check_int
from .errors import ConfigError, ModelLoadError, ProviderError
from .malloc import model_load
from .manifest import Manifest, tables_record
from .providers import TensorRTProfile, provider_list
from .runner import Runner
from .session import Session, SessionOptions, default_threads
from .streams import Streams, stream_count
from .tokenizer import TextTokenizer
from .variants import PRECISIONS, choose_variant, manifest_variant, runtime_lacks
from .verified import verified_bytes, verified_file, verified_tables

DEFAULT_TRT_CACHE = Path.home() / ".cache" / "embedrt" / "tensorrt"


# Padded tokens per batch: above this one batch's activations alone would outgrow any machine
# this runs on (MiniLM: ~100 MB at the default 16384).
MAX_BATCH_TOKENS = 1 << 20
MAX_BATCH_SIZE = 1 << 16
# TensorRT tunes its kernels for this batch shape (rows x tokens): the batcher's common case.
TRT_OPT_BATCH, TRT_OPT_SEQ = 32, 64


@dataclass(frozen=True)
class LoadOptions:
    """Encoder.load's options, checked once and carried to each device tried."""

    precision: str
    threads: int | None
    spinning: str  # already a SPINNING mode (spinning_mode), checked again by SessionOptions
    streams: int | None
    batch_tokens: int
    cache_dir: Path
    variant: str | None
    max_seq_length: int | None = None  # checked against the artifact's by seq_length

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


def load_on(
    path: Path, manifest: Manifest, device: str, o: LoadOptions
) -> tuple[TextTokenizer, Runner, EncoderInfo]:
    """The tokenizer, runner and info of the artifact's variant for this device and these options,
    each file verified as it is read, after the load check (_probe)."""
    variant = (
        manifest_variant(manifest, o.variant)
        if o.variant
        else choose_variant(manifest, device, o.precision)
    )
    lacks = runtime_lacks(variant)
    if lacks:
        raise ModelLoadError(f"{variant.file!r}: {lacks} (or load precision='fp32')")
    max_seq_length = seq_length(manifest, o.max_seq_length)
    tokenizer = TextTokenizer.from_bytes(
        verified_bytes(path, manifest.tokenizer),
        manifest.tokenizer.file,
        max_seq_length,
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
    fp16 = variant.precision == "fp16" or (device == "tensorrt" and o.precision in ("auto", "fp16"))
    providers = provider_list(
        device,
        variant_sha256=variant.sha256,
        inputs=manifest.inputs,
        cache_dir=o.cache_dir,
        profile=TensorRTProfile.within(
            max_batch=max(1, o.batch_tokens // GPU_PAD_MULTIPLE),
            max_seq=plan.padded(max_seq_length),
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
        max_seq_length=max_seq_length,
        streams=streams.count if streams else 1,
    )
    runner = Runner(session, plan, manifest.dim, manifest.pad_token_id, streams)
    # On the CPU the probe's blocks are their own mappings, so that shrink unmaps them.
    with model_load() if device == "cpu" else contextlib.nullcontext():
        _probe(runner, tokenizer, variant.file, device)
    return tokenizer, runner, info


def seq_length(manifest: Manifest, max_seq_length: int | None) -> int:
    """The tokens a text keeps: the artifact's max_seq_length, or a shorter one asked at load
    (as `model.max_seq_length = N` in sentence-transformers); ConfigError for a longer one, which
    the graph was neither exported nor checked for."""
    check_int(
        "max_seq_length",
        max_seq_length,
        least=2,
        most=manifest.max_seq_length,
        none=True,
        why=" (at most the artifact's max_seq_length)",
    )
    return max_seq_length or manifest.max_seq_length


# The load check's length: max_seq_length, but no more than this. A full-length check of a
# long-context model would cost its load the attention of one such text: ONNX Runtime's
# unfused attention holds heads x length^2 floats per score tensor, 3.2 GB for a 12-head model
# at 8192 tokens (ModernBERT-base's positions; bge-m3 has 16 heads at 8192, Qwen3 embedders
# 32768 positions), a few of them at once, at every load and in the export's own checks.
# 512 is the whole length of most BERT, RoBERTa, XLM-R and MPNet models, so theirs is still
# proven at load; a longer text is proven by its first run.
PROBE_MAX_TOKENS = 512
PROBE_WORDS = "embedrt load check "


def probe_text(tokens: int) -> str:
    """The load check's text for a row of `tokens` tokens: PROBE_WORDS once a token, as every
    tokenizer makes at least one token of each repetition (WordPiece makes 5, one that splits at
    spaces 3). The tokenizer reads it from a head when it is long (TextTokenizer._encode).
    """
    return PROBE_WORDS * tokens


def _probe(runner: Runner, tokenizer: TextTokenizer, name: str, device: str) -> None:
    """Run one text of max_seq_length tokens (PROBE_MAX_TOKENS at most): a manifest whose dim,
    or a max_seq_length up to PROBE_MAX_TOKENS, the graph cannot honour fails here, at load, as
    ModelLoadError, not at a user's first encode. The memory that run took goes back (shrink):
    kept, it was 40 MB of MPNet's resident memory that a workload of short texts never needs
    (docs/decisions.md)."""
    length = min(tokenizer.max_length, PROBE_MAX_TOKENS)
    rows = [tokenizer.tokenize_to(probe_text(length), length)]
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
