"""`embedrt bench`: latency and throughput of an artifact on this machine, per grid cell.

Lean runtime only (no torch). Each cell (batch size x sequence length) feeds synthetic batches of
exactly that shape (real token ids from the artifact's tokenizer, repeated to the length, so the
graph sees the same work as real text of that length): warm-up runs, then timed runs; p50/p95/p99
of one batch's latency and texts/s and tokens/s at the median.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .encoder import Encoder

FILLER = "The quick brown fox jumps over the lazy dog while the committee reviews the budget."


@dataclass(frozen=True)
class Cell:
    """One grid cell's figures. Latencies in milliseconds per batch."""

    batch_size: int
    seq_len: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    texts_per_s: float
    tokens_per_s: float


def token_rows(enc: Encoder, seq_len: int, rows: int) -> list[list[int]]:
    """rows token-id rows of exactly seq_len tokens ([CLS] ... [SEP]) from the real tokenizer."""
    ids = enc.tokenize(FILLER)[0]
    body = ids[1:-1] * (seq_len // max(len(ids) - 2, 1) + 1)
    row = [ids[0]] + body[: max(seq_len - 2, 0)] + [ids[-1]]
    return [row[:seq_len] if seq_len >= 2 else row[:2]] * rows


def run_grid(
    enc: Encoder, batch_sizes: list[int], seq_lens: list[int], *, warmup: int = 3, runs: int = 20
) -> list[Cell]:
    cells = []
    for seq_len in seq_lens:
        if seq_len > enc.max_seq_length:
            continue  # the tokenizer truncates there: longer cells would repeat the last one
        for bs in batch_sizes:
            rows = token_rows(enc, seq_len, bs)
            for _ in range(warmup):
                enc.encode_tokens(rows, batch_size=bs)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                enc.encode_tokens(rows, batch_size=bs)
                times.append(time.perf_counter() - t)
            ms = np.array(times) * 1000
            p50 = float(np.percentile(ms, 50))
            cells.append(
                Cell(
                    bs,
                    len(rows[0]),
                    round(p50, 3),
                    round(float(np.percentile(ms, 95)), 3),
                    round(float(np.percentile(ms, 99)), 3),
                    round(bs / p50 * 1000, 1),
                    round(bs * len(rows[0]) / p50 * 1000, 1),
                )
            )
    return cells


def report(enc: Encoder, cells: list[Cell], out: Path | None) -> str:
    i = enc.info
    head = (
        f"{i.path}: {i.variant} ({i.precision}, {i.file}) on {i.device}, "
        f"active {', '.join(i.active_providers)}"
    )
    lines = [
        head,
        "",
        f"{'batch':>6} {'seq':>5} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} "
        f"{'texts/s':>10} {'tokens/s':>11}",
    ]
    for c in cells:
        lines.append(
            f"{c.batch_size:>6} {c.seq_len:>5} {c.p50_ms:>9.2f} {c.p95_ms:>9.2f} "
            f"{c.p99_ms:>9.2f} {c.texts_per_s:>10.1f} {c.tokens_per_s:>11.1f}"
        )
    if out is not None:
        out.write_text(
            json.dumps({"encoder": enc.describe(), "cells": [asdict(c) for c in cells]}, indent=2)
            + "\n"
        )
    return "\n".join(lines)
