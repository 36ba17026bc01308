"""Runner: a loaded model's ONNX Runtime sessions, and how one planned batch of token rows runs.

    runner = encoder.runner
    vecs = runner.run(rows)                               # one batch, on every thread
    for vecs in runner.run_many(batches, len(batches)):   # in order, up to runner.width at once
        ...
    runner.on_stream(lambda run: run(rows))               # on a free stream, as a Future

This is what the surfaces plug into: the server's scheduler (embedrt.serve) plans rounds and
hands each run to a stream, the batch job (embedrt.jobs) plans a shard's batches; both give the
runner token rows and get vectors back. The Encoder tokenizes and plans for encode(); the Runner
pads and runs. On the CPU it holds two sessions: the all-thread one for a batch alone on the
cores (lower latency), and the streams' one, made on first use, for several batches at once
(streams.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from .batching import BatchPlan
from .session import Session
from .streams import Streams
from .tokenizer import Row, pad_rows

T = TypeVar("T")
Rows = Sequence[Row]  # token ids per text, special tokens included, unpadded
RunFn = Callable[[Rows], np.ndarray]  # one run over exactly these rows -> float32 [rows, dim]


@dataclass
class EncodeStats:
    """Counters one or more calls add to (pass the same object to accumulate).

    tokens are real tokens, padded_tokens what the batches ran (rows x padded width).
    """

    rows: int = 0
    batches: int = 0
    tokens: int = 0
    padded_tokens: int = 0

    @property
    def padding_efficiency(self) -> float:
        """Real tokens / padded tokens: 1.0 means no compute spent on padding."""
        return self.tokens / self.padded_tokens if self.padded_tokens else 1.0

    def count(self, rows: Rows, width: int) -> None:
        """Add one run of these rows, padded to width."""
        self.rows += len(rows)
        self.batches += bool(rows)
        self.tokens += sum(map(len, rows))
        self.padded_tokens += len(rows) * width


class Runner:
    """Runs planned batches on one model's sessions. Thread-safe."""

    def __init__(
        self,
        session: Session,
        plan: BatchPlan,
        dim: int,
        pad_id: int,
        streams: Streams[Session] | None = None,
    ):
        self._session = session
        self._plan = plan
        self._dim = dim
        self._pad_id = pad_id
        self._streams = streams

    @property
    def plan(self) -> BatchPlan:
        """The batching limits of this model on its device (token budget, pad multiple, run cost)."""
        return self._plan

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def width(self) -> int:
        """Runs at once: the number of streams (1 without: a GPU, or streams=1)."""
        return self._streams.count if self._streams is not None else 1

    def width_of(self, rows: Rows) -> int:
        """The padded width a run of these rows takes."""
        return self._plan.padded(max(map(len, rows), default=0))

    def run(
        self, rows: Rows, stats: EncodeStats | None = None, *, shrink: bool = False
    ) -> np.ndarray:
        """One inference run over exactly these rows on the all-thread session, float32
        [len(rows), dim] in row order. shrink: give the memory this run's activations took back
        afterwards (Session.run), for a run much larger than the ones that follow."""
        return self._run_on(self._session, rows, stats, shrink)

    def run_planned(
        self, rows: Rows, batches: list[np.ndarray], stats: EncodeStats | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row indices, vectors) of each planned batch of rows (plan_batches), in order, as
        run_many runs them."""
        runs = ([rows[i] for i in idx] for idx in batches)
        yield from zip(batches, self.run_many(runs, len(batches), stats), strict=True)

    def run_many(
        self, batches: Iterable[Rows], count: int, stats: EncodeStats | None = None
    ) -> Iterator[np.ndarray]:
        """The vectors of `count` batches, in order. With at least as many batches as streams
        they run up to `width` at once, each on its stream's share of the cores; otherwise one
        by one on every thread. batches may be a generator: it is pulled one batch ahead.
        stats is counted in the caller's thread."""
        if self._streams is None or count < self._streams.count:
            for rows in batches:
                yield self.run(rows, stats)
            return
        for rows, vecs in self._streams.map(lambda s, rows: (rows, self._run_on(s, rows)), batches):
            if stats is not None:
                stats.count(rows, self.width_of(rows))
            yield vecs

    def on_stream(self, work: Callable[[RunFn], T]) -> Future[T]:
        """work(run) on the next free stream's thread, where run(rows) runs on the streams'
        session; as a Future. Without streams, work runs now in the caller's thread with the
        all-thread session (the Future is already done)."""
        if self._streams is not None:
            return self._streams.submit(
                lambda session: work(lambda rows: self._run_on(session, rows))
            )
        done: Future[T] = Future()
        try:
            done.set_result(work(self.run))
        except Exception as e:
            done.set_exception(e)
        return done

    def start(self) -> None:
        """Make the streams' session now rather than on the first call with enough batches (a
        server does this at startup, so that no request pays for it)."""
        if self._streams is not None:
            self._streams.start()

    def _run_on(
        self, session: Session, rows: Rows, stats: EncodeStats | None = None, shrink: bool = False
    ) -> np.ndarray:
        width = self.width_of(rows)
        # a row with no tokens at all: an empty text, a tokenizer without specials
        if not all(map(len, rows)):
            return self._with_empty_rows(session, rows, stats, shrink)
        ids, mask = pad_rows(rows, width, self._pad_id)
        out = session.run(ids, mask, shrink=shrink)
        if stats is not None:
            stats.count(rows, width)
        return out

    def _with_empty_rows(
        self, session: Session, rows: Rows, stats: EncodeStats | None, shrink: bool
    ) -> np.ndarray:
        """A row without tokens gets the zero vector, as sentence-transformers gives it (its
        pooling of nothing is 0), rather than a graph run over a sequence of length 0."""
        out = np.zeros((len(rows), self._dim), dtype=np.float32)
        kept = [i for i, row in enumerate(rows) if len(row)]
        if kept:
            out[kept] = self._run_on(session, [rows[i] for i in kept], stats, shrink)
        return out
