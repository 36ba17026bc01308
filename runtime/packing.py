"""Packing one batching round's rows into inference runs: padding against the cost of a run.

Pure logic, no model. The scheduler's rounds mix short and long texts from many callers; a run
padded to the round's longest row wastes compute on padding, and a run per row pays ONNX
Runtime's per-run overhead each time (measured on MiniLM, 2 CPU cores, rounds of 30-64
sentences: runs of 32 rows cost ~40% more per text than runs of 4-8, one row per run ~60% more).
"""

from __future__ import annotations

import numpy as np

from .batching import BatchPlan


def plan_runs(lengths: np.ndarray, plan: BatchPlan, run_cost: int) -> list[tuple[int, int]]:
    """Cut rows sorted longest first into inference runs of least total cost: (start, end) pairs.

    A run costs run_cost + rows x padded width (in tokens); each run holds at most plan.max_rows
    rows and plan.max_tokens padded tokens (one row at least). A round mixes lengths, so one run
    padded to the round's longest row wastes compute, and a run per row wastes the per-run cost;
    this dynamic program finds the cheapest cuts in between, O(rows x max_rows).
    """
    n = len(lengths)
    widths = [plan.padded(int(x)) for x in lengths]
    best = [0.0] * (n + 1)
    cut = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        width = widths[i]
        most = min(n - i, plan.max_rows, max(1, plan.max_tokens // max(width, 1)))
        best[i] = float("inf")
        for k in range(1, most + 1):
            cost = run_cost + k * width + best[i + k]
            if cost < best[i]:
                best[i], cut[i] = cost, i + k
    runs, i = [], 0
    while i < n:
        runs.append((i, cut[i]))
        i = cut[i]
    return runs
