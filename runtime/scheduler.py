"""Dynamic batching: many callers' small requests coalesced into a few efficient inference runs.

    sched = Scheduler(encoder, BatchingConfig(max_batch_tokens=16384, max_wait_ms=2, max_queue=1024))
    sched.start()
    job = sched.submit(lambda: encoder.tokenize(texts))   # OverloadedError when the queue is full
    vecs = await job.future

Callers are coroutines on one asyncio loop; everything else runs on ONE worker thread that owns
the queue (a round's runs go to the encoder's streams, which split the cores between them, so a
second worker would only fight the first for the same cores). A job carries a `prepare`
callable that returns its token rows; the worker calls it (tokenizing costs ~20 us for a
sentence, a fifth of what handing it to a thread pool and back costs the event loop), so the
loop neither tokenizes nor waits for tokenization. Each
round the worker tokenizes what has arrived, then takes jobs FIFO until their tokens fill the
budget, or until the oldest job has waited max_wait; a job larger than the budget is split
across rounds. The round's rows are sorted by length and run in padded sub-batches
(batching.plan_batches), and each job gets its own rows back. A job whose `prepare` raises fails
alone with that error. A job cancelled by its caller (client gone) is dropped when the worker
reaches it, before any inference is spent on it. Knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from .batching import BatchingConfig, plan_batches
from .errors import OverloadedError, UnavailableError

log = logging.getLogger("embedrt.scheduler")


class SchedulerObserver:
    """Where the scheduler reports what it does (the server's metrics); the base ignores it all."""

    def batch(self, rows: int, tokens: int, padded: int, seconds: float) -> None: ...
    def queue_wait(self, seconds: float) -> None: ...
    def dropped(self) -> None: ...


@dataclass(eq=False)
class Job:
    """One caller's texts on their way through the queue. `future` resolves to float32
    [rows, dim] in row order, or to the error that stopped the job."""

    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    prepare: Callable[[], list[list[int]]]
    admitted: float = field(default_factory=time.perf_counter)
    rows: list[list[int]] = field(default_factory=list)
    lengths: np.ndarray | None = None
    out: np.ndarray | None = None
    taken: int = 0  # rows handed to the worker so far
    done: int = 0  # rows with embeddings
    cancelled: bool = False
    failed: bool = False
    released: bool = False  # no longer counted against max_queue

    @property
    def tokens(self) -> int:
        """Tokens of the job's texts after truncation, special tokens included (0 until the
        worker has tokenized them)."""
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
        self._arrived: deque[Job] = deque()  # submitted, not tokenized yet
        self._preparing: list[Job] = []  # being tokenized by the worker
        self._ready: deque[Job] = deque()  # tokenized, rows left to take
        self._ready_tokens = 0
        self._pending = 0
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="embedrt-inference", daemon=True)

    # ---- caller side (event loop thread) ----

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs submitted and not yet completely taken by the worker."""
        return self._pending

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closing

    def submit(self, prepare: Callable[[], list[list[int]]]) -> Job:
        """Queue a job whose token rows `prepare()` returns (called on the worker thread), or
        refuse it: OverloadedError when max_queue jobs are waiting, UnavailableError once the
        scheduler is closing. Await `job.future` for its vectors."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if not self.alive:
                raise UnavailableError("the embedding worker is not running (shutting down?)")
            if self._pending >= self.config.max_queue:
                raise OverloadedError(
                    f"the queue is full ({self.config.max_queue} requests waiting); retry shortly"
                )
            job = Job(future=loop.create_future(), loop=loop, prepare=prepare)
            self._pending += 1
            self._arrived.append(job)
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Its caller left: the worker skips whatever of the job it has not started."""
        with self._cond:
            job.cancelled = True

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
        """Empty the queue, answering each job UnavailableError (its part in flight is lost,
        and a job the worker is still tokenizing is not queued after all)."""
        with self._cond:
            left = [*self._arrived, *self._preparing, *self._ready]
            self._arrived, self._ready, self._ready_tokens = deque(), deque(), 0
            for job in left:
                job.failed = job.cancelled = True
                self._release(job)
        for job in left:
            _resolve(job.loop, [(job.future, None, UnavailableError(why))])

    def _release(self, job: Job) -> None:
        """The job no longer counts against max_queue. Holds the lock."""
        if not job.released:
            job.released = True
            self._pending -= 1

    def _loop(self) -> None:
        wait = self.config.max_wait_ms / 1000
        while True:
            with self._cond:
                while not self._arrived and not self._ready and not self._closing:
                    self._cond.wait()
                if not self._arrived and not self._ready:
                    return  # closing, and everything queued has been answered
                self._preparing, self._arrived = list(self._arrived), deque()
            if self._preparing:
                self._prepare(self._preparing)
            with self._cond:
                # Until the oldest job's deadline or a full budget, newcomers join the round:
                # tokenize those already here, else wait for more. Past it, the round starts.
                if self.config.batching and self._ready and not self._closing and not self._round_full():
                    left = self._ready[0].admitted + wait - time.perf_counter()
                    if left > 0:
                        if not self._arrived:
                            self._cond.wait(left)
                        continue
                parts = self._take()
            if parts:
                try:
                    self._infer(parts)
                except BaseException as e:  # never leave a caller waiting forever
                    log.exception("inference worker failed")
                    for job, _, _ in parts:
                        self._fail(job, e)

    def _prepare(self, jobs: list[Job]) -> None:
        """Tokenize newly arrived jobs (outside the lock) and queue them for rounds. A job whose
        tokenization raises (a text too long, a panic in the tokenizer library, which Python sees
        as a BaseException) fails alone."""
        answers: list[tuple[Job, Any, BaseException | None]] = []
        for job in jobs:
            if job.cancelled:
                continue
            try:
                rows = job.prepare()
                lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
                out = np.empty((len(rows), self.encoder.dim), dtype=np.float32)
            except BaseException as e:
                job.failed = True
                answers.append((job, None, e))
                continue
            job.rows, job.lengths, job.out = rows, lengths, out
            if not rows:  # nothing to run
                answers.append((job, out, None))
        dropped = 0
        with self._cond:
            for job in jobs:
                if job.cancelled or job.failed or not job.rows:
                    dropped += job.cancelled and not job.failed and not job.released
                    self._release(job)
                else:
                    self._ready.append(job)
                    self._ready_tokens += int(job.lengths.sum())
            self._preparing = []
        for _ in range(dropped):
            self._observer.dropped()
        for job, value, err in answers:
            _resolve(job.loop, [(job.future, value, err)])

    def _round_full(self) -> bool:
        """Enough is ready for a whole round. Holds the lock."""
        most = self.config.max_batch_requests
        return self._ready_tokens >= self.config.max_batch_tokens or (
            most is not None and len(self._ready) >= most)

    def _take(self) -> list[tuple[Job, int, int]]:
        """Pop the next round: (job, first row, end row) parts in FIFO order. Holds the lock."""
        budget = self.config.max_batch_tokens
        most = self.config.max_batch_requests
        parts: list[tuple[Job, int, int]] = []
        tokens = 0
        while self._ready and tokens < budget and (most is None or len(parts) < most):
            job = self._ready[0]
            start, n = job.taken, len(job.rows)
            if job.cancelled:
                self._ready.popleft()
                self._ready_tokens -= int(job.lengths[start:].sum())
                self._release(job)
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
            self._ready_tokens -= took
            job.taken = end
            parts.append((job, start, end))
            if end < n:
                break  # the budget is full; the rest of this job leads the next round
            self._ready.popleft()
            self._release(job)
        return parts

    def _infer(self, parts: list[tuple[Job, int, int]]) -> None:
        """Run a round: its rows sorted by length and cut into runs (on the encoder's streams, up
        to that many at once); each job is answered as soon as the run holding its last row
        ends, so its caller is served while the rest of the round runs, and its next request can
        join the next round."""
        now = time.perf_counter()
        for job, start, _ in parts:
            if start == 0:
                self._observer.queue_wait(now - job.admitted)
        rows = [r for job, s, e in parts for r in job.rows[s:e]]
        where = [(job, i) for job, s, e in parts for i in range(s, e)]  # each row's job and index
        lengths = np.concatenate([job.lengths[s:e] for job, s, e in parts])
        # Shortest runs first: the most callers are answered soonest (plan_batches lists them
        # longest first).
        planned = plan_batches(lengths, self._plan)[::-1]

        def runs():  # pulled one run ahead of the streams
            for idx in planned:
                idx = [i for i in idx if not where[i][0].cancelled]  # callers gone meanwhile
                if idx:
                    yield [rows[i] for i in idx], [where[i] for i in idx]

        padded = 0
        done = self.encoder.map_runs(self._attempt, runs(), len(planned))
        for (run_rows, run_where), result in done:
            self._deliver(run_rows, run_where, result)
            padded += len(run_rows) * self._plan.padded(len(run_rows[0]))
        self._observer.batch(len(rows), int(lengths.sum()), padded, time.perf_counter() - now)

    def _attempt(self, run: tuple[list[list[int]], list[tuple[Job, int]]]) -> tuple[Any, Any]:
        """One inference run (on a stream's thread): its vectors, or the Exception it raised."""
        try:
            return run, self.encoder.run_batch(run[0])
        except Exception as err:
            return run, err

    def _deliver(self, rows: list[list[int]], where: list[tuple[Job, int]],
                 result: np.ndarray | Exception) -> None:
        """A run's vectors go to their jobs, and jobs now complete are answered, each on its own
        event loop (one wake-up per loop). One bad job must not fail its run-mates: a failed
        run is retried job by job, and only the job that still fails gets the error."""
        if isinstance(result, Exception):
            jobs = list(dict.fromkeys(job for job, _ in where))
            if len(jobs) == 1:
                self._fail(jobs[0], result)
                return
            log.warning("a batch of %d jobs failed; retrying each job alone", len(jobs))
            for job in jobs:
                mine = [k for k, (j, _) in enumerate(where) if j is job]
                alone = ([rows[k] for k in mine], [where[k] for k in mine])
                self._deliver(*alone, self._attempt(alone)[1])
            return
        finished: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, None]]] = {}
        for vec, (job, i) in zip(result, where):
            if job.failed:
                continue
            job.out[i] = vec
            job.done += 1
            if job.done == len(job.rows):
                finished.setdefault(job.loop, []).append((job.future, job.out, None))
        for loop, items in finished.items():
            _resolve(loop, items)

    def _fail(self, job: Job, err: BaseException) -> None:
        """Answer the job with its error; the rest of its rows are skipped."""
        if not job.failed:
            job.failed = job.cancelled = True
            _resolve(job.loop, [(job.future, None, err)])


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
