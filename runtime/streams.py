"""Streams: several inference runs at once on the CPU, each on its own share of the cores.

ONNX Runtime spreads one run over its intra-op threads. A small model's run is hundreds of short
kernels, and each of them hands work to the pool's threads and waits for them; for throughput it
is cheaper to run `count` batches at once, each on threads/count cores, with no hand-off at all.
Measured on the 2-core machine (STS-B dev, batches of 32, 10 interleaved rounds): 2 streams of 1
thread ran int8 1.23x and fp32 1.12x the texts/s of one 2-thread run at a time, with identical
vectors; through Encoder.encode (short sentences, bench/tuning.py and ad hoc, 5-6 rounds) int8
1.11-1.37x and fp32 1.13x against one stream with spinning off. One batch alone still runs on
the encoder's own session with every thread (its latency is better there: 33.6 vs 52.5 ms for 32
int8 rows), so Streams only takes calls with at least `count` runs, and its session is created
on the first such call (an app that encodes one text at a time never pays its memory: +70 MB
int8, +101 MB fp32 on MiniLM).

All streams share one ONNX Runtime session (run is thread-safe), so the weights are loaded once
more, not once per stream.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

MAX_AUTO_STREAMS = 8  # each stream holds one batch's activations (~100 MB at the default budget)


def stream_count(streams: int | None, threads: int) -> int:
    """Streams for `threads` CPU threads: None = one per thread (at most MAX_AUTO_STREAMS)."""
    if streams is None:
        return max(1, min(threads, MAX_AUTO_STREAMS))
    if not isinstance(streams, int) or isinstance(streams, bool) or streams < 1:
        raise ConfigError(f"streams must be a positive integer or None (auto), got {streams!r}")
    if streams > threads:
        raise ConfigError(f"streams ({streams}) cannot exceed threads ({threads}): each stream "
                          "needs a core")
    return streams


class Streams:
    """`count` worker threads that share one session made by make_session() on first use."""

    def __init__(self, count: int, make_session: Callable[[], Any]):
        self.count = count
        self._make_session = make_session
        self._session: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    def current_session(self) -> Any:
        """The streams' session when called from one of its threads, else None."""
        return getattr(self._local, "session", None)

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, size: int) -> Iterator[R]:
        """fn over items, results in order. With at least `count` items (size tells how many;
        items may be a generator, pulled one run ahead of the streams), up to `count` calls run
        at once on the streams' threads, where run_batch takes the streams' session; otherwise,
        or when called from a stream thread, they run one by one in the caller."""
        if size < self.count or self.current_session() is not None:
            return map(fn, items)
        self.start()
        return self._ordered(fn, iter(items))

    def submit(self, fn: Callable[[T], R], item: T) -> Future:
        """fn(item) on a stream's thread, where run_batch takes the streams' session (the
        server's scheduler hands each run to the next free stream so)."""
        self.start()
        assert self._pool is not None
        return self._pool.submit(fn, item)

    def start(self) -> None:
        """Make the session and the threads now (else the first call that needs them does)."""
        with self._lock:
            if self._pool is None:
                self._session = self._make_session()  # errors reach the caller, nothing started
                self._pool = ThreadPoolExecutor(self.count, thread_name_prefix="embedrt-stream",
                                                initializer=self._enter)

    def _enter(self) -> None:
        self._local.session = self._session

    def _ordered(self, fn: Callable[[T], R], items: Iterator[T]) -> Iterator[R]:
        assert self._pool is not None
        pending = deque(self._pool.submit(fn, item) for item in islice(items, self.count))
        try:
            while pending:
                result = pending.popleft().result()
                for item in islice(items, 1):  # the next one, if any, takes the freed stream
                    pending.append(self._pool.submit(fn, item))
                yield result
        finally:
            for future in pending:  # a failed or abandoned call: drop what has not started
                future.cancel()
