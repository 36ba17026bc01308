"""What a shard holds in memory between the job's stages: its token rows, packed, and its
embeddings, in buffers the job reuses.

    rows = pack_rows(encoder.tokenize(texts))    # int32 views into one array
    buffers = ShardBuffers(dim)
    out = buffers.take(len(rows))                # float32 [rows, dim], maybe a used buffer
    ...; buffers.give(out)                       # after the shard is written

Both keep the job's resident memory flat (issue 20's soak, bench/results/soak_job_serve.md).
A shard's tokens as Python lists are one int object per token (~36 bytes with its list slot,
some 18 MB for 8,192 mixed-length texts): freed a shard later, they left CPython's and glibc's
heaps fragmented, so resident memory stepped up now and then. Packed, they are 4 bytes a token
in one allocation. A shard's embeddings (12 MiB at 8,192 x 384 floats) were a fresh array per
shard, handed back to the OS and taken again, so resident memory rose and fell by one buffer
with how many shards were in flight when it was read. Reused, the buffers stay resident at the
most the pipeline ever holds at once (depth + 2: one being filled, the queue, one being written).
"""

from __future__ import annotations

import itertools
import queue
from collections.abc import Sequence

import numpy as np


def pack_rows(rows: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """rows as int32 arrays that are views into one array, in order (same ids, same lengths);
    ValueError for an id outside int32 (no vocabulary is that large: never wrapped silently)."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    wide = np.fromiter(
        itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum())
    )
    if wide.size and (wide.min() < 0 or wide.max() > np.iinfo(np.int32).max):
        raise ValueError("a token id outside int32: not an id of any tokenizer's vocabulary")
    flat = wide.astype(np.int32)
    del wide
    ends = np.cumsum(lengths)
    return [flat[end - n : end] for n, end in zip(lengths.tolist(), ends.tolist(), strict=True)]


class ShardBuffers:
    """float32 [rows, dim] arrays for shards' embeddings, reused once given back (thread-safe:
    the infer stage takes, the write stage gives)."""

    def __init__(self, dim: int):
        self.dim = dim
        self._free: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
        self.made = 0  # buffers allocated so far: the most the pipeline held at once

    def take(self, rows: int) -> np.ndarray:
        """A [rows, dim] view of a free buffer, or of a new one when none is free or the free
        one is too small (the buffer keeps the larger size). Never blocks."""
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            buf = None
        if buf is None or len(buf) < rows:
            buf = np.empty((rows, self.dim), dtype=np.float32)
            self.made += 1
        return buf[:rows]

    def give(self, view: np.ndarray) -> None:
        """Hand back what take returned, once nothing reads it any more."""
        self._free.put(view if view.base is None else view.base)
