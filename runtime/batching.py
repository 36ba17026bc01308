"""Batch planning: sort texts by token length, then cut batches of least total cost.

Pure logic, no model. Padding every batch only to its own longest row and grouping rows of
similar length is worth ~2.5x on CPU against unsorted batches (measured, DESIGN.md). Where to cut
is a trade: a batch padded to a much longer first row wastes compute on padding, and a batch per
row pays ONNX Runtime's per-run overhead each time. A small dynamic program finds the cheapest
cuts under the row and token limits (a long-tail corpus of 60 texts: padding efficiency 0.25
with greedy full batches, measured). BatchingConfig holds the server's batching settings
(scheduler.py forms its rounds by them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    """Limits of one batch.

    max_tokens: padded area (rows x padded length) of a batch, in tokens. Bounds memory and
        keeps batches of short texts large and batches of long texts small. 16384 tokens is
        64 rows of 256 tokens: the activations of a 6-layer, 384-wide model stay ~100 MB.
    max_rows: rows per batch (encode's batch_size), as sentence-transformers users know it.
    pad_multiple: pad each batch's length up to a multiple of this (8 on GPUs for tensor cores,
        1 on CPU where every padded token costs time).
    run_cost: the fixed cost of one inference run, in tokens of compute: 32 on CPU (measured on
        MiniLM, 2 cores: runs of 4-8 rows vs 32 rows vs 1 row); GPUs launch many kernels per run,
        so more (512, not yet measured). 0 cuts wherever padding would appear.
    """

    max_tokens: int = 16384
    max_rows: int = 32
    pad_multiple: int = 1
    run_cost: int = 32

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_rows", "pad_multiple", "run_cost"):
            value = getattr(self, name)
            low = 0 if name == "run_cost" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")

    def padded(self, length: int) -> int:
        m = self.pad_multiple
        return -(-length // m) * m


def plan_batches(lengths: np.ndarray, plan: BatchPlan) -> list[np.ndarray]:
    """Indices of each batch, longest rows first; every index appears exactly once.

    Rows are sorted by length (stable, so equal lengths keep input order and the plan is
    deterministic) and cut by cut_sorted(). A row longer than the budget gets a batch of its own.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    return [order[s:e] for s, e in cut_sorted(lengths[order], plan)]


def cut_sorted(lengths: np.ndarray, plan: BatchPlan) -> list[tuple[int, int]]:
    """Cut rows sorted longest first into batches of least total cost: (start, end) pairs.

    A batch costs plan.run_cost + rows x padded width (tokens); each holds at most plan.max_rows
    rows and plan.max_tokens padded tokens (one row at least). Dynamic program, O(rows x max_rows).
    """
    n = len(lengths)
    widths = [plan.padded(int(x)) for x in lengths]
    best = [0] * (n + 1)
    cut = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        width = widths[i]
        most = min(n - i, plan.max_rows, max(1, plan.max_tokens // max(width, 1)))
        best[i] = -1
        for k in range(1, most + 1):
            cost = plan.run_cost + k * width + best[i + k]
            if best[i] < 0 or cost < best[i]:
                best[i], cut[i] = cost, i + k
    batches, i = [], 0
    while i < n:
        batches.append((i, cut[i]))
        i = cut[i]
    return batches


def padding_efficiency(lengths: np.ndarray, batches: list[np.ndarray], plan: BatchPlan) -> float:
    """Real tokens / padded tokens over a plan (1.0 means no padding at all)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    real = int(lengths.sum())
    padded = sum(len(b) * plan.padded(int(lengths[b].max())) for b in batches if len(b))
    return real / padded if padded else 1.0


@dataclass(frozen=True)
class BatchingConfig:
    """How the worker forms batches.

    max_batch_tokens: real tokens (sum of row lengths) taken from the queue per round, and the
        padded-token cap of each inference run inside it. 16384 is text-embeddings-inference's
        default; for a 6-layer, 384-wide model a full run stays around 100 MB of activations.
    max_wait_ms: how long the oldest queued job may wait for others to join its round while the
        worker is idle. Under load the worker is busy and rounds fill while it runs, so this only
        matters at low load, where it trades a little latency for larger batches.
    max_queue: jobs submitted and not yet completely taken by the worker; one more is answered
        OverloadedError (HTTP 429). Bounds memory and the latency a caller can be made to wait
        behind others.
    batch_size: most rows per inference run within a round. The round's rows are sorted by
        length and cut into runs by plan_batches(), trading padding against the cost of a run.
    run_cost: the fixed cost of one inference run, in tokens of work; None = 32 on the CPU
        (measured: MiniLM, 2 cores: ~7 tokens of overhead per run, rounded up because small runs
        also multiply less efficiently), 512 on a GPU (unmeasured yet: kernel launches dominate
        there, so runs should be long).
    batching: False runs every job on its own with no wait: the one-request-one-inference
        baseline the benchmark compares against.
    max_batch_requests: most jobs (requests) per round, None = no limit (as in
        text-embeddings-inference, whose option this is). A smaller round answers its last
        caller sooner; a larger one sorts more texts together.
    """

    max_batch_tokens: int = 16384
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    batch_size: int = 32
    run_cost: int | None = None
    batching: bool = True
    max_batch_requests: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_queue", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.max_batch_requests is not None and (
                not isinstance(self.max_batch_requests, int) or self.max_batch_requests < 1):
            raise ConfigError(f"max_batch_requests must be a positive integer or None, got {self.max_batch_requests!r}")
        if self.run_cost is not None and (not isinstance(self.run_cost, int) or self.run_cost < 0):
            raise ConfigError(f"run_cost must be a non-negative integer or None, got {self.run_cost!r}")
        if not isinstance(self.max_wait_ms, (int, float)) or not 0 <= self.max_wait_ms <= 60_000:
            raise ConfigError(f"max_wait_ms must be between 0 and 60000, got {self.max_wait_ms!r}")
