"""Streams: several inference runs at once on the CPU, each on its own share of the cores.

ONNX Runtime spreads one run over its intra-op threads. A small model's run is hundreds of short
kernels, and each of them hands work to the pool's threads and waits for them; for throughput it
is cheaper to run `count` batches at once, each on threads/count cores, with no hand-off at all
(bench/results/tuning.md). One batch alone still runs on the runner's all-thread session (lower
latency), so the streams' session is made on the first call that needs it: an app that encodes
one text at a time never pays its memory.

All streams share one ONNX Runtime session (run is thread-safe), so the weights are loaded once
more, not once per stream. Each call is handed that session explicitly.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Generic, TypeVar

from .config import check_int

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

MAX_AUTO_STREAMS = 8  # each stream holds one batch's activations (~100 MB at the default budget)
# The streams' session is one more copy of the weights, so by default only a graph this small
# gets streams: there runs are many short kernels and the copy is cheap (MiniLM's int8, 24 MB).
# For the bigger graphs measured (MiniLM fp32 90 MB, MPNet int8 110 MB and fp32 436 MB) the copy
# cost more memory than the speed it bought: bench/results/streams_*.md (make bench-streams).
AUTO_STREAMS_MAX_BYTES = 64 << 20


def stream_count(streams: int | None, threads: int, graph_bytes: int = 0) -> int:
    """Streams for `threads` CPU threads running a graph file of graph_bytes: None = one per
    thread (at most MAX_AUTO_STREAMS) for a graph of at most AUTO_STREAMS_MAX_BYTES, else 1."""
    if streams is None:
        if graph_bytes > AUTO_STREAMS_MAX_BYTES:
            return 1
        return max(1, min(threads, MAX_AUTO_STREAMS))
    check_int(
        "streams",
        streams,
        most=threads,
        why=f" (each stream needs one of the {threads} threads; None = one per thread)",
    )
    return streams


class Streams(Generic[S]):
    """`count` worker threads sharing one session, made by make_session() on first use."""

    def __init__(self, count: int, make_session: Callable[[], S]):
        self.count = count
        self._make_session = make_session
        self._session: S | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._inside = threading.local()  # set on the streams' own threads

    @property
    def inside(self) -> bool:
        """Whether the caller is one of the streams' threads (which must not wait on the others:
        a call from there runs in place, so nesting cannot deadlock the pool)."""
        return getattr(self._inside, "yes", False)

    def map(self, fn: Callable[[S, T], R], items: Iterable[T]) -> Iterator[R]:
        """fn(session, item) over items, results in order, up to `count` at once on the streams'
        threads. items may be a generator: it is pulled one item ahead of the streams."""
        session = self.start()
        if self.inside:
            return (fn(session, item) for item in items)
        return self._ordered(fn, session, iter(items))

    def submit(self, fn: Callable[[S], R]) -> Future[R]:
        """fn(session) on the next free stream's thread."""
        session = self.start()
        assert self._pool is not None  # made by start()
        return self._pool.submit(fn, session)

    def start(self) -> S:
        """Make the session and the threads now (else the first call that needs them does);
        returns the session."""
        with self._lock:
            if self._pool is None:
                self._session = self._make_session()  # errors reach the caller, nothing started
                self._pool = ThreadPoolExecutor(
                    self.count, thread_name_prefix="embedrt-stream", initializer=self._enter
                )
            assert self._session is not None
            return self._session

    def _enter(self) -> None:
        self._inside.yes = True

    def _ordered(self, fn: Callable[[S, T], R], session: S, items: Iterator[T]) -> Iterator[R]:
        assert self._pool is not None
        pool = self._pool
        pending = deque(pool.submit(fn, session, item) for item in islice(items, self.count))
        try:
            while pending:
                result = pending.popleft().result()
                for item in islice(items, 1):  # the next one, if any, takes the freed stream
                    pending.append(pool.submit(fn, session, item))
                yield result
        finally:
            for future in pending:  # a failed or abandoned call: drop what has not started
                future.cancel()
