"""The embed job on Ray Data: parquet in, parquet out, across the actors of a Ray cluster.

    summary = run_ray_job("s3://bucket/texts/", "s3://bucket/embeddings.parquet",
                          "/shared/all-MiniLM-L6-v2", RayJobConfig(actors=8), address="auto")

The same job as job.py, for inputs that outgrow one machine (`embedrt embed --ray`):

1. List the input's files and row groups on the driver (ray_input.py); a missing column or
   a file that is not parquet stops here, before Ray does anything.
2. Scan: Ray tasks check every row by the local job's rules. on_error=fail stops at the first
   bad row (by row number) naming it, before any inference, so nothing is written; skip lists
   bad rows in OUTPUT.skipped.jsonl, as the local job does.
3. Embed: read tasks -> EmbedBatch actors (one Encoder per actor) -> write_parquet, streamed
   by Ray Data with order preserved. The output is a directory of parquet files with the local
   job's columns and types (id, embedding fixed_size_list<float32>[dim], tokens int32), whose
   files in name order hold the rows in input order; pyarrow, pandas, Spark, DuckDB and Ray
   read it as one table. If the run fails, the partial directory is removed.

Not resumable (the local job is): a failed run starts again with --overwrite.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import errors
from ..errors import EmbedrtError, InputError
from ..loading import seq_length
from ..manifest import load_manifest
from .batch import EmbedBatch, require_ray
from .config import RayJobConfig, RayJobSummary
from .input import Source, list_source, read_rows, resolve_path
from .output import check_apart, check_output, count_output, put, remove, write_empty


def run_ray_job(
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    model: str | os.PathLike,
    config: RayJobConfig | None = None,
    *,
    address: str | None = None,
) -> RayJobSummary:
    """Embed every row of a parquet input into a parquet directory; see the module docstring.

    Uses the Ray connection of this process when there is one; otherwise connects to address
    (None: Ray's default, RAY_ADDRESS or a new local cluster) and disconnects at the end.
    """
    config = config or RayJobConfig()
    ray = require_ray()
    start = time.perf_counter()
    manifest = load_manifest(model)  # a wrong path fails here, not in every actor
    seq_length(manifest, config.max_seq_length)  # so does a length past the artifact's
    source = list_source(input_path, config.text_field, config.id_field)
    out_fs, out_path = resolve_path(output)
    skipped_path = None
    if config.on_error == "skip":
        skipped_path = config.skipped_path or os.fspath(output) + ".skipped.jsonl"
    check_apart(os.fspath(input_path), os.fspath(output), skipped_path)
    replace = check_output(out_fs, out_path, config.overwrite, output)

    own = not ray.is_initialized()
    if own:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    try:
        ctx = ray.data.DataContext.get_current()
        saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
        ctx.execution_options.preserve_order = True  # rows and files in input order
        ctx.enable_progress_bars = config.progress
        try:
            frags = ray.data.from_items(
                list(source.fragments), override_num_blocks=max(1, len(source.fragments))
            )
            with tempfile.TemporaryDirectory() as tmp:
                bad = _scan(frags, source, config, Path(tmp) / "skipped.jsonl")
                # No more actors than batches: an actor with nothing to do still loads a model.
                batches = -(-(source.rows - bad) // config.batch_rows)
                actors = min(config.actors or _default_actors(ray, config), batches)
                rows = source.rows - bad
                if replace:  # only now: a scan that stops at a bad row leaves the old output
                    remove(out_fs, out_path)
                if rows:
                    _embed(
                        frags, source, config, actors, str(Path(model).resolve()), out_fs, out_path
                    )
                else:  # Ray writes no file for no rows; the local job writes an empty table
                    write_empty(
                        out_fs, out_path, manifest.dim, string_ids=config.id_field is not None
                    )
                written, tokens = count_output(out_fs, out_path)
                if written != rows:
                    raise InputError(
                        f"{output}: {written} rows written, the scan counted {rows}; "
                        "did the input change while the job ran? Run it again"
                    )
                if skipped_path is not None:
                    put(Path(tmp) / "skipped.jsonl", skipped_path)
        finally:
            ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
    finally:
        if own:
            ray.shutdown()
    return RayJobSummary(
        output=os.fspath(output),
        rows=rows,
        skipped=bad,
        tokens=tokens,
        seconds=time.perf_counter() - start,
        dim=manifest.dim,
        actors=actors,
        skipped_path=skipped_path,
    )


def _scan(frags: Any, source: Source, config: RayJobConfig, side: Path) -> int:
    """Bad rows: raise at the first (fail) or write them to side (skip); returns how many."""
    bad = frags.map_batches(
        read_rows,
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=0.5,
        fn_kwargs=source.read_kwargs("scan", config.batch_rows),
    )
    count = 0
    with open(side, "w", encoding="utf-8") as f, _task_errors():
        for row in bad.iter_rows():  # in row order (preserve_order), streamed
            if config.on_error == "fail":
                raise InputError(
                    f"{row['where']}: {row['reason']}. Nothing was written; fix the row, "
                    "or pass --on-error skip to skip bad rows (listed in a side file)"
                )
            line = {"row": row["row"], "reason": row["reason"]}
            if len(source.files) > 1:
                line["where"] = row["where"]
            f.write(json.dumps(line) + "\n")
            count += 1
    return count


def _embed(
    frags: Any,  # ray.data.Dataset of the input's row groups
    source: Source,
    config: RayJobConfig,
    actors: int,
    model: str,
    out_fs: Any,
    out_path: str,
) -> None:
    ray = require_ray()
    # Readers and writers reserve no CPU: when actors take every CPU (actors = CPUs, the
    # default), a reader that waits for a free CPU would stall the job for good. They are a
    # small part of the work, and Ray Data's backpressure bounds how many run at once.
    rows = frags.map_batches(
        read_rows,
        batch_size=1,
        batch_format="pyarrow",
        num_cpus=0,
        fn_kwargs=source.read_kwargs("embed", config.batch_rows),
    )
    embedded = rows.map_batches(
        EmbedBatch,
        batch_size=config.batch_rows,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=config.actor_cpus,
        num_gpus=config.actor_gpus or None,
        fn_constructor_kwargs=dict(
            model=model,
            text_column="text",
            keep_text=False,
            device=config.device,
            precision=config.precision,
            threads=config.threads,
            batch_size=config.batch_size,
            batch_tokens=config.batch_tokens,
            max_seq_length=config.max_seq_length,
            spinning=config.spinning,
            prompt_name=config.prompt_name,
        ),
    )
    try:
        with _task_errors():
            embedded.write_parquet(
                out_path,
                filesystem=out_fs,
                min_rows_per_file=config.rows_per_file,
                # The local writer's choices (writers.py): raw floats do not compress.
                compression={"id": "snappy", "embedding": "none", "tokens": "snappy"},
                use_dictionary=False,
                ray_remote_args={"num_cpus": 0},
            )
    except BaseException:
        try:
            remove(out_fs, out_path)  # nothing half-written is left to look like a result
        except OSError:
            pass  # the job's own error is the one to report
        raise


def _default_actors(ray: Any, config: RayJobConfig) -> int:
    have = ray.cluster_resources()
    if config.actor_gpus > 0:
        return max(1, int(have.get("GPU", 0) // config.actor_gpus))
    return max(1, int(have.get("CPU", 1) // config.actor_cpus))


@contextmanager
def _task_errors() -> Iterator[None]:
    """An embedrt error raised inside a Ray task or actor comes out as itself, not wrapped."""
    try:
        yield
    except EmbedrtError:
        raise
    except Exception as e:
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, EmbedrtError):
            cause = getattr(cause, "cause", None) or cause.__cause__
        if cause is not None:
            raise cause from None
        # An actor whose constructor failed (a corrupted artifact on that node) comes back as
        # ActorDiedError, which keeps only the text of the error: find embedrt's in it.
        found = re.findall(r"embedrt\.errors\.(\w+): (.+)", str(e))
        kind = getattr(errors, found[-1][0], None) if found else None
        if isinstance(kind, type) and issubclass(kind, EmbedrtError):
            raise kind(f"an EmbedBatch actor failed to start: {found[-1][1]}") from None
        raise
