"""What the scheduler's worker moves around: a caller's Job, the ReadyJobs queue a Round is
taken from, the Runs a round is cut into, and the delivery of their results to each caller's
event loop.

Threads: the ReadyJobs queue, a job's `taken` and `released`, and the Runs not yet started
change under the scheduler's lock, by whichever thread takes a round or starts a run (the worker,
or a stream that just ended a run). A job's output, `done` and its rounds' counters only the
worker touches, without a lock. `cancelled` and `failed` are set under the lock, except by
fail() on the worker; a stream reading a stale `cancelled` only runs rows nobody waits for,
which delivery then skips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .batching import BatchPlan, plan_batches

log = logging.getLogger("embedrt.scheduler")


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
    taken: int = 0  # rows taken into rounds so far
    done: int = 0  # rows with embeddings
    cancelled: bool = False
    failed: bool = False
    released: bool = False  # no longer counted against max_queue
    # Tokens of the job's texts after truncation, special tokens included (0 until the worker
    # has tokenized them): the usage figure of the answer.
    tokens: int = 0


class ReadyJobs:
    """Tokenized jobs with rows left to take, FIFO, and their tokens. The scheduler holds its
    lock around every call."""

    def __init__(self) -> None:
        self._jobs: deque[Job] = deque()
        self.tokens = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: Job) -> None:
        self._jobs.append(job)
        self.tokens += job.tokens

    def oldest(self) -> Job:
        return self._jobs[0]

    def clear(self) -> list[Job]:
        """Empty the queue; the jobs that were in it."""
        jobs, self._jobs, self.tokens = list(self._jobs), deque(), 0
        return jobs

    def take(self, budget: int, most: int | None, batching: bool) -> tuple[list[tuple[Job, int, int]], list[Job], int]:
        """The next round: (job, first row, end row) parts in FIFO order, up to `budget` tokens
        and `most` jobs (one whole job without batching); the jobs now out of the queue (wholly
        taken, or cancelled), and how many of those were dropped before any of their rows ran."""
        parts: list[tuple[Job, int, int]] = []
        out: list[Job] = []
        dropped = tokens = 0
        while self._jobs and tokens < budget and (most is None or len(parts) < most):
            job = self._jobs[0]
            start, n = job.taken, len(job.rows)
            if job.cancelled:
                self._jobs.popleft()
                self.tokens -= int(job.lengths[start:].sum())
                out.append(job)
                dropped += start == 0
                continue
            if not batching:
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
            self.tokens -= took
            job.taken = end
            parts.append((job, start, end))
            if end < n:
                break  # the budget is full; the rest of this job leads the next round
            self._jobs.popleft()
            out.append(job)
        return parts, out, dropped


@dataclass(eq=False)
class Round:
    """The rows taken from the queue at once; reported to the observer when its last run ends."""

    rows: int
    tokens: int
    started: float
    runs_left: int
    padded: int = 0


@dataclass(eq=False)
class Run:
    """One inference run: its token rows, and for each row its job and the row's index there."""

    rows: list[list[int]]
    where: list[tuple[Job, int]]
    round: Round

    def jobs(self) -> list[Job]:
        return list(dict.fromkeys(job for job, _ in self.where))

    def live(self) -> "Run":
        """The run without the rows of callers gone meanwhile (it may be left empty)."""
        if not any(job.cancelled for job, _ in self.where):
            return self
        return self._rows_of(lambda job: not job.cancelled)

    def of(self, job: Job) -> "Run":
        """The run with only this job's rows."""
        return self._rows_of(lambda j: j is job)

    def _rows_of(self, wanted: Callable[[Job], bool]) -> "Run":
        keep = [k for k, (job, _) in enumerate(self.where) if wanted(job)]
        return Run([self.rows[k] for k in keep], [self.where[k] for k in keep], self.round)


def cut_round(parts: list[tuple[Job, int, int]], plan: BatchPlan, now: float) -> list[Run]:
    """A round, (job, first row, end row) parts, as runs: its rows sorted by length and cut by
    batching.plan_batches, shortest run first (the most callers are answered soonest)."""
    rows = [r for job, s, e in parts for r in job.rows[s:e]]
    where = [(job, i) for job, s, e in parts for i in range(s, e)]  # each row's job and index
    lengths = np.concatenate([job.lengths[s:e] for job, s, e in parts])
    planned = plan_batches(lengths, plan)[::-1]  # plan_batches lists them longest first
    rnd = Round(rows=len(rows), tokens=int(lengths.sum()), started=now, runs_left=len(planned))
    return [Run([rows[i] for i in idx], [where[i] for i in idx], rnd) for idx in planned]


def deliver(run: Run, result: np.ndarray | Exception, retry: Callable[[Run], np.ndarray | Exception]) -> None:
    """A run's vectors go to their jobs, and jobs now complete are answered, each on its own
    event loop (one wake-up per loop). One bad job must not fail its run-mates: a failed run is
    retried (retry(run) returns vectors or the Exception) job by job, and only the job that
    still fails gets the error."""
    if isinstance(result, Exception):
        jobs = run.jobs()
        if len(jobs) == 1:
            fail(jobs[0], result)
            return
        log.warning("a batch of %d jobs failed; retrying each job alone", len(jobs))
        for job in jobs:
            alone = run.of(job)
            deliver(alone, retry(alone), retry)
        return
    finished: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any, None]]] = {}
    for vec, (job, i) in zip(result, run.where):
        if job.failed:
            continue
        job.out[i] = vec
        job.done += 1
        if job.done == len(job.rows):
            finished.setdefault(job.loop, []).append((job.future, job.out, None))
    for loop, items in finished.items():
        resolve(loop, items)


def fail(job: Job, err: BaseException) -> None:
    """Answer the job with its error; the rest of its rows are skipped."""
    if not job.failed:
        job.failed = job.cancelled = True
        resolve(job.loop, [(job.future, None, err)])


def resolve(loop: asyncio.AbstractEventLoop, items: list[tuple[asyncio.Future, Any, BaseException | None]]) -> None:
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
