"""The batch embedding job: a file of texts in, a file of embeddings out, resumable after a kill.

    enc = Encoder.load("artifacts/all-MiniLM-L6-v2")
    summary = run_job("rows.jsonl.gz", "out.parquet", enc, JobConfig(id_field="id"))
    print(summary.describe())

1. Hash the input (content) and open the ledger (ledger.py); with resume, check it is the same job.
2. Scan the input once: count rows, and stop at the first bad row (on_error="fail", before any
   work, so nothing is half-written) or record bad rows in a side file (on_error="skip").
3. Pipeline (pipeline.py): read rows -> tokenize -> infer -> write, one shard at a time.
   A shard is a fixed range of shard_rows output rows and rows are batched only with rows of
   their own shard: ONNX Runtime's result for a text changes in the last bits with the padded
   width of its batch, so a shard recomputed after a kill must see exactly the same batches to
   come out byte-identical.
4. Assemble the shards into the output (temporary file + rename) and remove the parts directory.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..batching import BatchPlan, plan_batches
from ..encoder import Encoder, resolve_prompt
from ..errors import ConfigError, InputError
from ..manifest import sha256_file
from ..runner import EncodeStats
from .config import JobConfig, JobSummary
from .ledger import Ledger, sync_dir
from .pipeline import run_stages
from .progress import Progress
from .readers import InputSpec, RowId, iter_records
from .shard_memory import ShardBuffers, pack_rows
from .writers import ShardWriter, output_writer

SKIPPED_TMP = "skipped.jsonl.tmp"


@dataclass
class _Chunk:
    """One shard's rows as they move through the pipeline."""

    index: int
    ids: list[RowId]
    texts: list[str] | None
    rows: list[np.ndarray] | None = None  # packed (shard_memory.py)
    embeddings: np.ndarray | None = None
    lengths: np.ndarray | None = None


def run_job(
    input_path: str | Path,
    output: str | Path,
    encoder: Encoder,
    config: JobConfig | None = None,
    *,
    stream: IO[str] | None = None,
) -> JobSummary:
    """Embed every row of input_path into output; see the module docstring for the steps."""
    config = config or JobConfig()
    resolve_prompt(encoder.manifest, config.prompt_name, None)  # an unknown name: before any work
    start = time.perf_counter()
    stream = stream if stream is not None else sys.stderr
    spec = InputSpec.of(input_path, config.text_field, config.id_field)
    output = Path(output)
    writer = output_writer(
        output, config.format, string_ids=config.id_field is not None, dim=encoder.dim
    )
    parts = output.with_name(output.name + ".parts")
    skipped_path = None
    if config.on_error == "skip":
        skipped_path = config.skipped_path or output.with_name(output.name + ".skipped.jsonl")
    if output.exists() and not config.overwrite and not (config.resume and parts.is_dir()):
        raise ConfigError(f"{output} exists; pass --overwrite to replace it")
    check_paths(spec.path, output, parts, skipped_path)

    ledger = Ledger.open(
        parts, job_identity(spec, encoder, config, writer.name), resume=config.resume
    )
    fresh = not ledger.shards
    try:
        total, skipped = _scan(spec, config, ledger.directory / SKIPPED_TMP)
    except BaseException:
        (ledger.remove if fresh else ledger.close)()  # a fresh run leaves nothing behind
        raise
    try:
        resumed = ledger.done_rows
        progress = Progress(
            total, resumed, stream=stream, mode=config.progress, interval_s=config.log_interval_s
        )
        stats = EncodeStats()
        buffers = ShardBuffers(encoder.dim)
        try:
            run_stages(
                _chunks(spec, config.shard_rows, len(ledger.shards)),
                [
                    _tokenize(encoder, config.prompt_name),
                    _infer(encoder, config, progress, stats, buffers),
                    _write(ledger, writer, buffers),
                ],
                depth=config.queue_depth,
            )
        finally:
            progress.close()
        if ledger.done_rows != total:
            raise InputError(
                f"{spec.path} changed while the job ran: {ledger.done_rows} rows "
                f"embedded, the scan counted {total}; run the job again"
            )
        tmp = ledger.directory / ("output" + writer.suffix + ".tmp")
        with open(tmp, "wb") as f:
            writer.assemble(ledger.shard_paths(), f, total)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output)
        if skipped_path is not None:
            shutil.move(ledger.directory / SKIPPED_TMP, skipped_path)  # may be another filesystem
        sync_dir(output.parent)
    finally:
        ledger.close()
    ledger.remove()
    return JobSummary(
        output=output,
        rows=total,
        embedded=stats.rows,
        resumed=resumed,
        skipped=skipped,
        tokens=stats.tokens,
        seconds=time.perf_counter() - start,
        padding_efficiency=stats.padding_efficiency,
        dim=encoder.dim,
        skipped_path=skipped_path,
    )


def check_paths(source: Path, output: Path, parts: Path, skipped: Path | None) -> None:
    """Before any work: nothing the job writes may be its input (it would be replaced or
    deleted), the output may not be a directory, and every file's folder must exist."""
    for what, path in (
        ("output", output),
        ("parts directory", parts),
        ("skipped-rows file", skipped),
    ):
        if path is None:
            continue
        if path.exists() and path.resolve().samefile(source):
            raise ConfigError(f"the {what} {str(path)!r} is the input file; name another one")
        if not path.parent.is_dir():
            raise ConfigError(f"the {what}'s folder {str(path.parent)!r} does not exist")
    if output.is_dir():
        raise ConfigError(
            f"the output {str(output)!r} is a directory; name a .npy or .parquet file"
        )
    if skipped is not None and skipped.resolve() == output.resolve():
        raise ConfigError(f"the skipped-rows file and the output are both {str(output)!r}")
    if source.resolve().is_relative_to(parts.resolve()):  # removed with the parts at the end
        raise ConfigError(f"the input {str(source)!r} is inside the job's parts directory")


def job_identity(spec: InputSpec, encoder: Encoder, config: JobConfig, fmt: str) -> dict[str, Any]:
    """What must not change between a run and its resume (ledger.py compares it).

    The batching limits decide which rows share a batch, and so the last bits of each embedding.
    """
    manifest, info = encoder.manifest, encoder.info
    identity: dict[str, Any] = {
        "input": {"size": spec.path.stat().st_size, "sha256": sha256_file(spec.path)},
        "model": {
            "variant": info.variant,
            "variant_sha256": manifest.variant(info.variant).sha256,
            "tokenizer_sha256": manifest.tokenizer.sha256,
            "device": info.device,
            "precision": info.precision,
        },
        "options": {
            "format": fmt,
            "text_field": config.text_field,
            "id_field": config.id_field,
            "shard_rows": config.shard_rows,
        },
        "batching": asdict(job_plan(encoder, config)),
    }
    # the prompt only where there is one: a job without one still resumes a ledger written by
    # an embedrt from before prompts
    prompt = resolve_prompt(manifest, config.prompt_name, None)
    if prompt:
        identity["options"]["prompt"] = prompt
    # likewise a max_seq_length shorter than the artifact's (Encoder.load's), only where asked
    if encoder.max_seq_length != manifest.max_seq_length:
        identity["options"]["max_seq_length"] = encoder.max_seq_length
    return identity


def job_plan(encoder: Encoder, config: JobConfig) -> BatchPlan:
    """The job's batches: the Encoder's own limits (token budget, pad multiple and run cost of its
    device), so each planned batch reaches the session whole, with the job's rows per batch."""
    return replace(encoder.runner.plan, max_rows=config.batch_size)


def _scan(spec: InputSpec, config: JobConfig, skipped_tmp: Path) -> tuple[int, int]:
    """(good rows, bad rows). on_error=fail raises at the first bad row; skip lists them."""
    good = bad = 0
    side = open(skipped_tmp, "w", encoding="utf-8") if config.on_error == "skip" else None
    try:
        for rec in iter_records(spec):
            if rec.error is None:
                good += 1
                continue
            bad += 1
            if side is None:
                raise InputError(
                    f"{spec.path} {spec.unit} {rec.line}: {rec.error}. Nothing was written; fix "
                    "the row, or pass --on-error skip to skip bad rows (listed in a side file)"
                )
            side.write(json.dumps({spec.unit: rec.line, "reason": rec.error}) + "\n")
    finally:
        if side is not None:
            side.close()
    return good, bad


def _chunks(spec: InputSpec, shard_rows: int, first_shard: int) -> Iterator[_Chunk]:
    """Good rows grouped into shards, starting at shard first_shard (the rest are done)."""
    skip, index = first_shard * shard_rows, first_shard
    ids: list[RowId] = []
    texts: list[str] = []
    for rec in iter_records(spec):
        if rec.error is not None:
            continue  # the scan has already failed or listed it
        if skip:
            skip -= 1
            continue
        assert rec.text is not None  # a record without error has its text
        ids.append(rec.id)
        texts.append(rec.text)
        if len(texts) == shard_rows:
            yield _Chunk(index, ids, texts)
            index, ids, texts = index + 1, [], []
    if texts:
        yield _Chunk(index, ids, texts)


def _tokenize(encoder: Encoder, prompt_name: str | None) -> Callable[[_Chunk], _Chunk]:
    def stage(chunk: _Chunk) -> _Chunk:
        assert chunk.texts is not None
        chunk.rows = pack_rows(encoder.tokenize(encoder.apply_prompt(chunk.texts, prompt_name)))
        chunk.texts = None  # the raw texts can be long; only tokens travel on
        return chunk

    return stage


def _infer(
    encoder: Encoder,
    config: JobConfig,
    progress: Progress,
    stats: EncodeStats,
    buffers: ShardBuffers,
) -> Callable[[_Chunk], _Chunk]:
    # Planned here, batch by batch, so progress moves per batch rather than per shard.
    plan = job_plan(encoder, config)

    def stage(chunk: _Chunk) -> _Chunk:
        rows = chunk.rows
        assert rows is not None
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        out = buffers.take(len(rows))
        for idx, vecs in encoder.runner.run_planned(rows, plan_batches(lengths, plan), stats):
            out[idx] = vecs
            progress.update(len(idx), int(lengths[idx].sum()))
        chunk.rows, chunk.embeddings, chunk.lengths = None, out, lengths
        return chunk

    return stage


def _write(ledger: Ledger, writer: ShardWriter, buffers: ShardBuffers) -> Callable[[_Chunk], None]:
    def stage(chunk: _Chunk) -> None:
        embeddings, lengths = chunk.embeddings, chunk.lengths
        assert embeddings is not None and lengths is not None
        ledger.commit(
            chunk.index,
            len(chunk.ids),
            writer.suffix,
            lambda f: writer.write_shard(f, chunk.ids, embeddings, lengths),
        )
        chunk.embeddings = None
        buffers.give(embeddings)  # written and synced: the next shard may fill it

    return stage
