"""What the Ray job is told (RayJobConfig) and what it reports (RayJobSummary).

Pure dataclasses; the CLI takes its defaults from RayJobConfig.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..batching import BatchPlan
from ..config import check_choice, check_int, check_number
from ..jobs.config import ON_ERROR
from ..loading import MAX_BATCH_SIZE, MAX_BATCH_TOKENS
from ..session import SPINNING, SessionOptions


@dataclass(frozen=True)
class RayJobConfig:
    """How the Ray job reads, batches, places actors and writes.

    actors: EmbedBatch actors; None = the cluster's CPUs (GPUs for GPU actors) / per actor.
    actor_cpus / actor_gpus: Ray resources per actor; ONNX Runtime gets floor(actor_cpus)
        threads unless threads is given; actor_gpus > 0 runs on the GPU (device auto).
    batch_rows: rows handed to an actor per call, sorted by length inside it. 1024 gives
        MiniLM on STS-B padding efficiency 0.960 (0.990 at 8192, job.py) while small inputs
        still spread over several actors; raise it for large jobs.
    batch_size / batch_tokens: rows and padded tokens per inference run, as the local job.
    max_seq_length: as Encoder.load's (None: the artifact's).
    rows_per_file: least rows per output file (Ray joins blocks up to it): fewer, larger files.
    progress: Ray Data's progress bars on or off.
    Others (prompt_name included) as JobConfig (jobs/config.py).
    """

    text_field: str = "text"
    id_field: str | None = None
    actors: int | None = None
    actor_cpus: float = 1.0
    actor_gpus: float = 0.0
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    spinning: str = SessionOptions.spinning
    prompt_name: str | None = None
    batch_rows: int = 1024
    batch_size: int = 32
    batch_tokens: int = BatchPlan.max_tokens
    max_seq_length: int | None = None
    rows_per_file: int = 65536
    on_error: str = "fail"
    skipped_path: str | None = None
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_int("batch_rows", self.batch_rows, most=1 << 20)
        check_int("batch_size", self.batch_size, most=MAX_BATCH_SIZE)
        check_int("batch_tokens", self.batch_tokens, most=MAX_BATCH_TOKENS)
        check_int("rows_per_file", self.rows_per_file)
        check_int("actors", self.actors, most=1 << 16, none=True)
        check_int("threads", self.threads, most=1 << 10, none=True)  # checked again on each node
        # against the artifact's own by each actor's Encoder.load
        check_int("max_seq_length", self.max_seq_length, least=2, none=True)
        check_number("actor_cpus", self.actor_cpus, 0.01, 1 << 16)
        check_number("actor_gpus", self.actor_gpus, 0, 1 << 10)
        check_choice("on_error", self.on_error, ON_ERROR)
        check_choice("spinning", self.spinning, SPINNING)


@dataclass(frozen=True)
class RayJobSummary:
    """What the Ray job did: rows written, rows skipped, tokens, wall time (scan included)."""

    output: str
    rows: int
    skipped: int
    tokens: int
    seconds: float
    dim: int
    actors: int
    skipped_path: str | None = None

    def describe(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        skipped = (
            f" ({self.skipped:,} skipped, listed in {self.skipped_path})"
            if self.skipped_path
            else ""
        )
        return (
            f"embedded {self.rows:,} rows on Ray ({self.actors} actors) in {self.seconds:.1f} s"
            f"{skipped}: {rate:,.0f} rows/s, {self.tokens / max(self.seconds, 1e-9):,.0f} tokens/s "
            f"-> {self.output}/ ({self.rows:,} x {self.dim} float32, parquet files)"
        )
