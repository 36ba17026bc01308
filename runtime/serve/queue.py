"""What the scheduler's worker moves around: a caller's Request, the ReadyRequests queue a Round is
taken from, the Runs a round is cut into, and the delivery of their results to each caller's
event loop.

Threads: the ReadyRequests queue, a request's `taken` and `released`, and the Runs not yet started
change under the scheduler's lock, by whichever thread takes a round or starts a run (the worker,
or a stream that just ended a run). A request's output, `done` and its rounds' counters only the
worker touches, without a lock. `cancelled` and `failed` are set under the lock, except by
fail() on the worker; a stream reading a stale `cancelled` only runs rows nobody waits for,
which delivery then skips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..batching import BatchPlan, plan_batches

log = logging.getLogger("embedrt.scheduler")

# What a caller's future is settled with: the future, its value, or the error it gets instead.
Answer = tuple["asyncio.Future[np.ndarray]", "np.ndarray | None", "BaseException | None"]


@dataclass(eq=False)
class Request:
    """One caller's texts on their way through the queue. `future` resolves to float32
    [rows, dim] in row order, or to the error that stopped the request."""

    future: asyncio.Future[np.ndarray]
    loop: asyncio.AbstractEventLoop
    prepare: Callable[[], list[list[int]]]
    admitted: float = field(default_factory=time.perf_counter)
    rows: list[list[int]] = field(default_factory=list)
    lengths: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # tokens per row
    out: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))  # the vectors
    taken: int = 0  # rows taken into rounds so far
    done: int = 0  # rows with embeddings
    cancelled: bool = False
    failed: bool = False
    released: bool = False  # no longer counted against max_queue
    # Tokens of the request's texts after truncation, special tokens included (0 until the worker
    # has tokenized them): the usage figure of the answer.
    tokens: int = 0
    # Partly taken, then passed over by a whole round of later arrivals (fair rounds): the next
    # arrivals line up behind it, so it cannot starve.
    passed: bool = False

    def tokenize(self, dim: int) -> BaseException | None:
        """On the worker: its token rows from `prepare`, and room for their vectors; the error
        that stopped it, if any (a text too long, or a panic in the tokenizer library, which
        Python sees as a BaseException), and then it is failed."""
        try:
            rows = self.prepare()
            self.lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
            self.out = np.empty((len(rows), dim), dtype=np.float32)
        except BaseException as e:
            self.failed = True
            return e
        self.rows, self.tokens = rows, int(self.lengths.sum())
        return None


class ReadyRequests:
    """Tokenized requests with rows left to take, FIFO, and their tokens. The scheduler holds its
    lock around every call."""

    def __init__(self) -> None:
        self._queue: deque[Request] = deque()
        self.tokens = 0

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, request: Request, fair: bool = True) -> None:
        """Queue a tokenized request: last in line, or with fair, ahead of the requests already
        partly taken (a big request's rest waits behind whoever arrives during its round),
        unless a whole round has passed such a request over: then it goes next, and no stream
        of small requests can starve it."""
        at = len(self._queue)
        while fair and at and self._queue[at - 1].taken and not self._queue[at - 1].passed:
            at -= 1
        self._queue.insert(at, request)
        self.tokens += request.tokens

    def oldest(self) -> Request:
        """The request first in line (with fair rounds, not always the first admitted: a split
        request's rest goes to the back)."""
        return self._queue[0]

    def clear(self) -> list[Request]:
        """Empty the queue; the requests that were in it."""
        requests, self._queue, self.tokens = list(self._queue), deque(), 0
        return requests

    def take(
        self, budget: int, most: int | None, batching: bool, fair: bool = True
    ) -> tuple[list[tuple[Request, int, int]], list[Request], int]:
        """The next round: (request, first row, end row) parts in line order, up to `budget`
        tokens and `most` requests (one whole request without batching); the requests now out
        of the queue (wholly taken, or cancelled), and how many of those were dropped before any
        of their rows ran. fair: a request only partly taken goes to the back of the line, so
        the requests behind it wait for one round of it, not for all of it."""
        parts: list[tuple[Request, int, int]] = []
        out: list[Request] = []
        dropped = tokens = 0
        while self._queue and tokens < budget and (most is None or len(parts) < most):
            request = self._queue[0]
            start, n = request.taken, len(request.rows)
            if request.cancelled:
                self._queue.popleft()
                self.tokens -= int(request.lengths[start:].sum())
                out.append(request)
                dropped += start == 0
                continue
            if not batching:
                if parts:
                    break
                end = n
            else:
                # As many rows as fit the budget, and at least one row per round.
                room = np.cumsum(request.lengths[start:]) <= budget - tokens
                end = start + max(int(room.sum()), 0 if parts else 1)
                if end == start:
                    break
            took = int(request.lengths[start:end].sum())
            tokens += took
            self.tokens -= took
            request.taken = end
            parts.append((request, start, end))
            if end < n:  # the budget is full
                if fair:
                    self._queue.rotate(-1)  # its rest waits behind those that waited behind it
                break
            self._queue.popleft()
            out.append(request)
        if fair and parts:  # who took part in this round, and who was passed over by it
            took_part = {id(r) for r, _, _ in parts}
            for request in self._queue:
                if request.taken:
                    request.passed = id(request) not in took_part
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
    """One inference run: its token rows, and for each row its request and the row's index there."""

    rows: list[list[int]]
    where: list[tuple[Request, int]]
    round: Round

    def requests(self) -> list[Request]:
        return list(dict.fromkeys(request for request, _ in self.where))

    def live(self) -> Run:
        """The run without the rows of callers gone meanwhile (it may be left empty)."""
        if not any(request.cancelled for request, _ in self.where):
            return self
        return self._rows_of(lambda request: not request.cancelled)

    def of(self, request: Request) -> Run:
        """The run with only this request's rows."""
        return self._rows_of(lambda j: j is request)

    def _rows_of(self, wanted: Callable[[Request], bool]) -> Run:
        keep = [k for k, (request, _) in enumerate(self.where) if wanted(request)]
        return Run([self.rows[k] for k in keep], [self.where[k] for k in keep], self.round)


def cut_round(parts: list[tuple[Request, int, int]], plan: BatchPlan, now: float) -> list[Run]:
    """A round, (request, first row, end row) parts, as runs: its rows sorted by length and cut by
    batching.plan_batches, shortest run first (the most callers are answered soonest)."""
    rows = [r for request, s, e in parts for r in request.rows[s:e]]
    where = [
        (request, i) for request, s, e in parts for i in range(s, e)
    ]  # each row's request and index
    lengths = np.concatenate([request.lengths[s:e] for request, s, e in parts])
    planned = plan_batches(lengths, plan)[::-1]  # plan_batches lists them longest first
    rnd = Round(rows=len(rows), tokens=int(lengths.sum()), started=now, runs_left=len(planned))
    return [Run([rows[i] for i in idx], [where[i] for i in idx], rnd) for idx in planned]


def deliver(
    run: Run, result: np.ndarray | Exception, retry: Callable[[Run], np.ndarray | Exception]
) -> None:
    """A run's vectors go to their requests, and requests now complete are answered, each on its own
    event loop (one wake-up per loop). One bad request must not fail its run-mates: a failed run is
    retried (retry(run) returns vectors or the Exception) request by request, and only the request that
    still fails gets the error."""
    if isinstance(result, Exception):
        requests = run.requests()
        if len(requests) == 1:
            fail(requests[0], result)
            return
        log.warning("a batch of %d requests failed; retrying each request alone", len(requests))
        for request in requests:
            alone = run.of(request)
            deliver(alone, retry(alone), retry)
        return
    finished: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
    for vec, (request, i) in zip(result, run.where, strict=True):
        if request.failed:
            continue
        request.out[i] = vec
        request.done += 1
        if request.done == len(request.rows):
            finished.setdefault(request.loop, []).append((request.future, request.out, None))
    for loop, items in finished.items():
        resolve(loop, items)


def fail(request: Request, err: BaseException) -> None:
    """Answer the request with its error; the rest of its rows are skipped."""
    if not request.failed:
        request.failed = request.cancelled = True
        resolve(request.loop, [(request.future, None, err)])


def resolve(loop: asyncio.AbstractEventLoop, items: list[Answer]) -> None:
    """Hand results to their futures on the loop's own thread, one wake-up for all of them."""

    def settle() -> None:
        for fut, value, err in items:
            if fut.done():  # the caller gave up (cancelled) meanwhile
                continue
            if err is not None:
                fut.set_exception(err)
            elif value is not None:
                fut.set_result(value)
            else:  # a bug: an answer must carry vectors or an error
                fut.set_exception(RuntimeError("no vectors and no error for this request"))

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass
