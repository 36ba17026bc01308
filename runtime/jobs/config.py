"""What a batch job is told (JobConfig) and what it reports (JobSummary).

Pure dataclasses; the CLI takes its defaults from JobConfig.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import check_choice, check_int, check_number
from ..loading import MAX_BATCH_SIZE
from .progress import MODES as PROGRESS

# A shard is held whole in memory (its texts, tokens and vectors) and is the unit a kill loses.
MAX_SHARD_ROWS = 1 << 20

ON_ERROR = ("fail", "skip")  # what a job does at a bad row (the Ray job too)


@dataclass(frozen=True)
class JobConfig:
    """How a job reads, batches and writes.

    text_field / id_field: input fields (id_field None: ids are line / parquet row numbers).
    format: npy | parquet, None = from the output's suffix.
    batch_size: rows per inference batch (encode's batch_size). The other batching limits (padded
        tokens per batch, pad multiple, run cost) are the Encoder's (Encoder.load's batch_tokens),
        so the encoder runs each planned batch unsplit; the job identity records them all.
    shard_rows: rows per shard, the unit of atomic writes and of resume. Rows sort only within
        a shard, and 8192 rows already pad nearly as little as sorting the whole input
        (bench/results/embed_job.md); they are 12 MiB of 384-d embeddings, so a few shards in
        flight bound memory, and a kill loses at most a shard of work.
    on_error: fail (stop at the first bad row, naming it) | skip (record it in skipped_path).
    skipped_path: side file of skipped rows, JSON lines; None = OUTPUT.skipped.jsonl.
    resume: continue the interrupted job of the same output. overwrite: replace an existing output.
    progress: auto | bar | log | none. log_interval_s: seconds between log lines.
    queue_depth: shards waiting between two stages. 1 already keeps every stage busy (a shard
        takes seconds to infer, far longer than to read or tokenize) with the fewest in memory.
    prompt_name: the model's prompt prepended to every text (e.g. "document"); None = the
        model's default prompt, if it has one (as sentence-transformers' encode).
    """

    text_field: str = "text"
    id_field: str | None = None
    format: str | None = None
    batch_size: int = 32
    shard_rows: int = 8192
    on_error: str = "fail"
    skipped_path: Path | None = None
    resume: bool = False
    overwrite: bool = False
    progress: str = "auto"
    log_interval_s: float = 30.0
    queue_depth: int = 1
    prompt_name: str | None = None

    def __post_init__(self) -> None:
        check_int("batch_size", self.batch_size, most=MAX_BATCH_SIZE)
        check_int("shard_rows", self.shard_rows, most=MAX_SHARD_ROWS)
        check_int("queue_depth", self.queue_depth, most=64)
        check_choice("on_error", self.on_error, ON_ERROR)
        check_choice("progress", self.progress, PROGRESS)
        check_number("log_interval_s", self.log_interval_s, 0, 24 * 3600)


@dataclass(frozen=True)
class JobSummary:
    """What a job did. rows: output rows; embedded: rows computed by this run (resumed = rows
    a previous run had committed); seconds: this run's wall time, scan and assembly included."""

    output: Path
    rows: int
    embedded: int
    resumed: int
    skipped: int
    tokens: int
    seconds: float
    padding_efficiency: float
    dim: int
    skipped_path: Path | None = None

    @property
    def rows_per_s(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        notes = []
        if self.resumed:
            notes.append(f"{self.resumed:,} resumed from shards")
        if self.skipped_path is not None:
            notes.append(f"{self.skipped:,} skipped, listed in {self.skipped_path}")
        extra = f" ({'; '.join(notes)})" if notes else ""
        return (
            f"embedded {self.embedded:,} rows in {self.seconds:.1f} s{extra}: "
            f"{self.rows_per_s:,.0f} rows/s, {self.tokens_per_s:,.0f} tokens/s, padding "
            f"efficiency {self.padding_efficiency:.3f} -> {self.output} ({self.rows:,} x {self.dim} float32)"
        )
