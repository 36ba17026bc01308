"""Dynamic batching: many callers' small requests coalesced into a few efficient inference runs.

    sched = Scheduler(encoder, BatchingConfig(max_batch_tokens=16384, max_wait_ms=2, max_queue=1024))
    sched.start()
    job = sched.admit()                 # OverloadedError when max_queue jobs are already waiting
    rows = encoder.tokenize(texts)      # off the event loop (the caller's thread pool)
    vecs = await sched.submit(job, rows)

Callers are coroutines on one asyncio loop; inference runs on ONE worker thread that owns the
session (ONNX Runtime parallelizes inside a run, so a second worker would only fight the first
for the same cores). Each round the worker takes jobs from a FIFO queue until their tokens fill
the budget, or until the oldest job has waited max_wait; a job larger than the budget is split
across rounds. The round's rows go to Encoder.encode_tokens, which sorts them by length and runs
them in padded sub-batches, and each job gets its own rows back. A job cancelled by its caller
(client gone) is dropped when the worker reaches it, before any inference is spent on it.
Knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .batching import plan_batches
from .errors import ConfigError, OverloadedError, UnavailableError

log = logging.getLogger("embedrt.scheduler")


@dataclass(frozen=True)
class BatchingConfig:
    """How the worker forms batches.

    max_batch_tokens: real tokens (sum of row lengths) taken from the queue per round, and the
        padded-token cap of each inference run inside it. 16384 is text-embeddings-inference's
        default; for a 6-layer, 384-wide model a full run stays around 100 MB of activations.
    max_wait_ms: how long the oldest queued job may wait for others to join its round while the
        worker is idle. Under load the worker is busy and rounds fill while it runs, so this only
        matters at low load, where it trades a little latency for larger batches.
    max_queue: jobs admitted (tokenizing or queued) and not yet taken by the worker; one more is
        answered OverloadedError (HTTP 429). Bounds memory and the latency a caller can be made
        to wait behind others.
    batch_size: most rows per inference run within a round. The round's rows are sorted by
        length and cut into runs by plan_batches(), trading padding against the cost of a run.
    run_cost: the fixed cost of one inference run, in tokens of work; None = 32 on the CPU
        (measured: MiniLM, 2 cores: ~7 tokens of overhead per run, rounded up because small runs
        also multiply less efficiently), 512 on a GPU (unmeasured yet: kernel launches dominate
        there, so runs should be long).
    batching: False runs every job on its own with no wait: the one-request-one-inference
        baseline the benchmark compares against.
    """

    max_batch_tokens: int = 16384
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    batch_size: int = 32
    run_cost: int | None = None
    batching: bool = True

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_queue", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.run_cost is not None and (not isinstance(self.run_cost, int) or self.run_cost < 0):
            raise ConfigError(f"run_cost must be a non-negative integer or None, got {self.run_cost!r}")
        if not isinstance(self.max_wait_ms, (int, float)) or not 0 <= self.max_wait_ms <= 60_000:
            raise ConfigError(f"max_wait_ms must be between 0 and 60000, got {self.max_wait_ms!r}")


class SchedulerObserver:
    """Where the scheduler reports what it does (the server's metrics); the base ignores it all."""

    def batch(self, rows: int, tokens: int, padded: int, seconds: float) -> None: ...
    def queue_wait(self, seconds: float) -> None: ...
    def dropped(self) -> None: ...


@dataclass(eq=False)
class Job:
    """One caller's texts on their way through the queue."""

    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    admitted: float = field(default_factory=time.perf_counter)
    rows: list[list[int]] = field(default_factory=list)
    lengths: np.ndarray | None = None
    out: np.ndarray | None = None
    taken: int = 0  # rows handed to the worker so far
    done: int = 0  # rows with embeddings
    queued: bool = False
    cancelled: bool = False

    @property
    def tokens(self) -> int:
        """Tokens of the job's texts after truncation, special tokens included."""
        return int(self.lengths.sum()) if self.lengths is not None else 0


class Scheduler:
    """A bounded queue in front of one inference worker thread. Thread-safe; see module docstring."""

    def __init__(self, encoder: Any, config: BatchingConfig, observer: SchedulerObserver | None = None):
        self.encoder = encoder
        self.config = config
        self._observer = observer or SchedulerObserver()
        base = encoder.batch_plan  # the device's pad multiple and run cost
        self._plan = replace(
            base, max_tokens=config.max_batch_tokens, max_rows=config.batch_size,
            run_cost=base.run_cost if config.run_cost is None else config.run_cost,
        )
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._queued_tokens = 0
        self._pending = 0
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="embedrt-inference", daemon=True)

    # ---- caller side (event loop thread) ----

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs admitted and not yet completely taken by the worker."""
        return self._pending

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closing

    def admit(self) -> Job:
        """Reserve a place in the queue for the calling coroutine's next job, or refuse."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if not self.alive:
                raise UnavailableError("the embedding worker is not running (shutting down?)")
            if self._pending >= self.config.max_queue:
                raise OverloadedError(
                    f"the queue is full ({self.config.max_queue} requests waiting); retry shortly"
                )
            self._pending += 1
        return Job(future=loop.create_future(), loop=loop)

    def submit(self, job: Job, rows: list[list[int]]) -> asyncio.Future:
        """Queue a job's token rows; the future resolves to float32 [len(rows), dim] in row order.

        A job admitted before close() (or before the worker died) and submitted after it fails
        with UnavailableError: nobody would ever take it from the queue.
        """
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        with self._cond:
            if job.cancelled:
                return job.future
            if not self.alive:
                self._pending -= 1
                job.cancelled = True  # never queued: a later cancel() must not release it again
                job.future.set_exception(UnavailableError("the embedding worker stopped (shutting down?)"))
                return job.future
            job.rows, job.lengths, job.queued = rows, lengths, True
            job.out = np.empty((len(rows), self.encoder.dim), dtype=np.float32)
            if not rows:  # nothing to run; never reaches the worker
                self._pending -= 1
                job.future.set_result(job.out)
                return job.future
            self._queue.append(job)
            self._queued_tokens += int(lengths.sum())
            self._cond.notify()
        return job.future

    def cancel(self, job: Job, *, client_gone: bool = True) -> None:
        """Skip what the worker has not started of a job: its client left, or (client_gone=False)
        the caller could not submit it (tokenization refused it). Admitted jobs release now."""
        with self._cond:
            if job.cancelled or job.taken == len(job.rows) and job.queued:
                return
            job.cancelled = True
            if not job.queued:  # never reaches the queue
                self._pending -= 1
                if client_gone:
                    self._observer.dropped()

    def close(self, timeout: float | None = None) -> None:
        """Stop admitting, let the worker finish every queued job, and join it. Jobs still queued
        when timeout (seconds) runs out fail with UnavailableError; a round in flight still ends."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._fail_queued("the server shut down before this request was embedded")

    # ---- worker side ----

    def _work(self) -> None:
        try:
            self._loop()
        finally:  # normally empty; after a bug in the worker, nobody may wait forever
            with self._cond:
                self._closing = True
            self._fail_queued("the embedding worker stopped")

    def _fail_queued(self, why: str) -> None:
        """Empty the queue, answering each job UnavailableError (its part in flight is lost)."""
        with self._cond:
            left, self._queue = list(self._queue), deque()
            self._queued_tokens = 0
            self._pending -= len(left)
        for job in left:
            _resolve(job.loop, [(job.future, None, UnavailableError(why))])

    def _loop(self) -> None:
        wait = self.config.max_wait_ms / 1000
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return  # closing, and everything queued has been answered
                if self.config.batching:
                    deadline = self._queue[0].admitted + wait
                    while not self._closing and self._queued_tokens < self.config.max_batch_tokens:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                parts = self._take()
            if parts:
                try:
                    self._infer(parts)
                except BaseException as e:  # never leave a caller waiting forever
                    log.exception("inference worker failed")
                    for job, _, _ in parts:
                        _resolve(job.loop, [(job.future, None, e)])

    def _take(self) -> list[tuple[Job, int, int]]:
        """Pop the next round: (job, first row, end row) parts in FIFO order. Holds the lock."""
        budget = self.config.max_batch_tokens
        parts: list[tuple[Job, int, int]] = []
        tokens = 0
        while self._queue and tokens < budget:
            job = self._queue[0]
            start, n = job.taken, len(job.rows)
            if job.cancelled:
                self._queue.popleft()
                self._queued_tokens -= int(job.lengths[start:].sum())
                self._pending -= 1
                if start == 0:
                    self._observer.dropped()
                continue
            if not self.config.batching:
                if parts:
                    break
                end = n
            else:
                # As many rows as fit the budget, and at least one row per round.
                room = np.cumsum(job.lengths[start:]) <= budget - tokens
                end = start + max(int(room.sum()), 0 if parts else 1)
                if end == start:
                    break
            took = int(job.lengths[start:end].sum())
            tokens += took
            self._queued_tokens -= took
            job.taken = end
            parts.append((job, start, end))
            if end < n:
                break  # the budget is full; the rest of this job leads the next round
            self._queue.popleft()
            self._pending -= 1
        return parts

    def _infer(self, parts: list[tuple[Job, int, int]]) -> None:
        now = time.perf_counter()
        for job, start, _ in parts:
            if start == 0:
                self._observer.queue_wait(now - job.admitted)
        rows = [r for job, s, e in parts for r in job.rows[s:e]]
        lengths = np.concatenate([job.lengths[s:e] for job, s, e in parts])
        out = np.empty((len(rows), self.encoder.dim), dtype=np.float32)
        padded = 0
        try:
            for idx in plan_batches(lengths, self._plan):
                out[idx] = self.encoder.encode_tokens([rows[i] for i in idx], len(idx))
                padded += len(idx) * self._plan.padded(int(lengths[idx[0]]))
        except Exception:
            if len(parts) == 1:
                raise
            # One bad job must not fail its batch-mates: run each job's rows on their own.
            log.warning("a batch of %d jobs failed; retrying each job alone", len(parts))
            self._infer_each(parts)
            return
        self._observer.batch(len(rows), int(lengths.sum()), padded, time.perf_counter() - now)
        self._scatter(parts, out)

    def _infer_each(self, parts: list[tuple[Job, int, int]]) -> None:
        for job, s, e in parts:
            try:
                self._scatter([(job, s, e)], self.encoder.encode_tokens(job.rows[s:e], self.config.batch_size))
            except Exception as err:
                _resolve(job.loop, [(job.future, None, err)])

    def _scatter(self, parts: list[tuple[Job, int, int]], out: np.ndarray) -> None:
        """Copy each job's rows into its output; resolve the jobs that are complete, each on its
        own event loop (one wake-up per loop)."""
        finished: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, None]]] = {}
        offset = 0
        for job, s, e in parts:
            job.out[s:e] = out[offset : offset + e - s]
            offset += e - s
            job.done += e - s
            if job.done == len(job.rows):
                finished.setdefault(job.loop, []).append((job.future, job.out, None))
        for loop, items in finished.items():
            _resolve(loop, items)


def _resolve(loop: asyncio.AbstractEventLoop, items: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
    """Hand results to their futures on the loop's own thread, one wake-up for all of them."""

    def settle() -> None:
        for fut, value, err in items:
            if fut.done():  # the caller gave up (cancelled) meanwhile
                continue
            if err is not None:
                fut.set_exception(err)
            else:
                fut.set_result(value)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
