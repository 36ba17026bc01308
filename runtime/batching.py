"""Batch planning: sort texts by token length, then cut batches of least total cost.

Pure logic, no model. Padding every batch only to its own longest row and grouping rows of
similar length beats unsorted batches by a wide margin on CPU (docs/decisions.md). Where to cut
is a trade: a batch padded to a much longer first row wastes compute on padding, and a batch per
row pays ONNX Runtime's per-run overhead each time. A small dynamic program finds the cheapest
cuts under the row and token limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import check_int

# The fixed cost of one inference run, in tokens of compute. CPU: measured on MiniLM, 2 cores
# (bench/results/tuning.md); GPU: a guess until a GPU run sets it (kernel launches dominate
# there, so runs should be long).
CPU_RUN_COST = 32
GPU_RUN_COST = 512
# GPUs pad each batch's length to a multiple of 8 (tensor cores); the CPU pays for every token.
GPU_PAD_MULTIPLE = 8
# On the CPU a run's widest activation (the feed-forward's inner layer, tokens x its width
# floats) is held to this many floats, 6 MiB: 1024 tokens a run for MiniLM (width 1536), 512
# for MPNet (3072). The matrix products lose nothing at that size (their speed per token levels
# off from ~256 rows), and a model's arena stays near what one such run needs instead of
# growing with batch_size x length (docs/decisions.md "A CPU run's tokens sized by the model").
CPU_ACTIVATION_FLOATS = 6 << 18
CPU_MIN_RUN_TOKENS = 256


def cpu_run_tokens(batch_tokens: int, activation_width: int | None) -> int:
    """The padded tokens a CPU run may hold: batch_tokens, and for a graph whose widest
    activation is known, no more than CPU_ACTIVATION_FLOATS of it (CPU_MIN_RUN_TOKENS at least)."""
    if activation_width is None:
        return batch_tokens
    return min(batch_tokens, max(CPU_MIN_RUN_TOKENS, CPU_ACTIVATION_FLOATS // activation_width))


@dataclass(frozen=True)
class BatchPlan:
    """Limits of one batch.

    max_tokens: padded area (rows x padded length) of a batch, in tokens. Bounds the memory
        of the activations that grow with the tokens (a linear layer's output) and keeps
        batches of short texts large and batches of long texts small.
    max_cells: rows x padded length squared: the area of one head's attention scores, which
        grow with the square of the length. None = no bound (GPUs). The default is 8 rows of
        128 tokens: 32 rows up to 64 tokens, 2 of 256, 1 above, so one batch's
        attention scores stay ~6 MB per tensor for 12 heads whatever the texts' length. Against
        four times that bound it cut MiniLM's peak RSS by a third on paragraphs and the long
        tail at the same or better texts/s (bench/results/max_cells_*.md, docs/decisions.md).
    max_rows: rows per batch (encode's batch_size), as sentence-transformers users know it.
    pad_multiple: pad each batch's length up to a multiple of this (GPU_PAD_MULTIPLE on GPUs,
        1 on CPU where every padded token costs time).
    run_cost: the fixed cost of one inference run, in tokens of compute (CPU_RUN_COST,
        GPU_RUN_COST). 0 cuts wherever padding would appear.
    """

    max_tokens: int = 16384
    max_rows: int = 32
    pad_multiple: int = 1
    run_cost: int = CPU_RUN_COST
    max_cells: int | None = 8 * 128 * 128

    def __post_init__(self) -> None:
        for name in ("max_tokens", "max_rows", "pad_multiple"):
            check_int(name, getattr(self, name))
        check_int("run_cost", self.run_cost, least=0)
        check_int("max_cells", self.max_cells, none=True)

    def padded(self, length: int) -> int:
        m = self.pad_multiple
        return -(-length // m) * m

    def most_rows(self, width: int) -> int:
        """Rows a batch padded to width may hold (one at least, however long)."""
        width = max(width, 1)
        most = min(self.max_rows, self.max_tokens // width)
        if self.max_cells is not None:
            most = min(most, self.max_cells // (width * width))
        return max(1, most)


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

    A batch costs plan.run_cost + rows x padded width (tokens); each holds at most
    plan.most_rows(width) rows (one at least). Dynamic program, O(rows x max_rows).
    """
    n = len(lengths)
    widths = [plan.padded(int(x)) for x in lengths]
    best = [0] * (n + 1)
    cut = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        width = widths[i]
        most = min(n - i, plan.most_rows(width))
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
