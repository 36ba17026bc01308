"""Dynamic batching: many callers' small requests coalesced into a few efficient inference runs.

    sched = Scheduler(encoder.runner, BatchingConfig(max_batch_tokens=16384, max_wait_ms=2))
    sched.start()
    request = sched.submit(lambda: encoder.tokenize(texts))   # OverloadedError when the queue is full
    vecs = await request.future

Callers are coroutines on one asyncio loop; ONE worker thread tokenizes (each request's
`prepare`) and delivers, and inference runs on the runner's streams, one run per share of the
cores, or alone on all of them. Batching is continuous: whenever a stream is free, a round is
taken FIFO until its tokens fill the budget (or max_batch_requests requests), or once the oldest
request has waited max_wait; a request larger than the budget is split across rounds. A round's
rows are sorted by length and cut into runs (batching.plan_batches), shortest first; each run
goes to the next free stream, and a stream that ends a run starts the next one itself. Each
request is answered as soon as the run holding its last row ends. docs/architecture.md draws
the threads and why each hand-off is where it is.

A request whose `prepare` raises fails alone with that error, and so does a request whose rows
make a run fail (the run is retried request by request). A request cancelled by its caller
(client gone) is dropped when its round is taken or its run starts, before any inference is
spent on it. Knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from ..errors import OverloadedError, UnavailableError
from .backend import BatchRunner, NoObserver, RunExecutor, SchedulerObserver
from .config import BatchingConfig
from .queue import ReadyRequests, Request, Round, Run, cut_round, deliver, fail, resolve

log = logging.getLogger("embedrt.scheduler")

__all__ = ["BatchRunner", "NoObserver", "Request", "Scheduler", "SchedulerObserver"]  # for callers


class Scheduler:
    """A bounded queue in front of one inference worker thread. Thread-safe; see module docstring."""

    def __init__(
        self, runner: BatchRunner, config: BatchingConfig, observer: SchedulerObserver | None = None
    ):
        self.runner = runner
        self.config = config
        self._observer: SchedulerObserver = observer or NoObserver()
        self._plan = config.plan(runner.plan)  # with the device's pad multiple and run cost
        self._width = max(1, runner.width)  # runs at once
        self._cond = threading.Condition()
        self._arrived: deque[Request] = deque()  # submitted, not tokenized yet
        self._preparing: list[Request] = []  # being tokenized by the worker
        self._ready = ReadyRequests()  # tokenized, rows left to take
        self._planned: deque[Run] = deque()  # the last round's runs not started yet
        self._running: set[Run] = set()  # on a stream or on the solo thread
        # Ended runs and their vectors (or error), for the worker to deliver.
        self._finished: deque[tuple[Run, np.ndarray | Exception]] = deque()
        self._pending = 0
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="embedrt-inference", daemon=True)
        self._executor = RunExecutor(runner, self._observer, self._run_ended)

    # ---- caller side (event loop thread) ----

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests submitted and not yet completely taken into rounds."""
        return self._pending

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._closing

    def submit(self, prepare: Callable[[], list[list[int]]]) -> Request:
        """Queue a request whose token rows `prepare()` returns (called on the worker thread), or
        refuse it: OverloadedError when max_queue requests are waiting, UnavailableError once the
        scheduler is closing. Await `request.future` for its vectors."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if not self.alive:
                raise UnavailableError("the embedding worker is not running (shutting down?)")
            if self._pending >= self.config.max_queue:
                raise OverloadedError(
                    f"the queue is full ({self.config.max_queue} requests waiting); retry shortly"
                )
            request = Request(future=loop.create_future(), loop=loop, prepare=prepare)
            self._pending += 1
            self._arrived.append(request)
            self._cond.notify()
        return request

    def cancel(self, request: Request) -> None:
        """Its caller left: whatever of the request has not started running is skipped."""
        with self._cond:
            request.cancelled = True

    def close(self, timeout: float | None = None) -> None:
        """Stop admitting, let the worker finish every queued request, and join it. Requests
        still queued when timeout (seconds) runs out fail with UnavailableError; runs in flight
        still end."""
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
            self._fail_queued("the embedding worker stopped", running=True)
            self._executor.shutdown()

    def _fail_queued(self, why: str, running: bool = False) -> None:
        """Empty the queue, answering each request UnavailableError (its part in flight is lost,
        and a request the worker is still tokenizing is not queued after all); with running, also
        the requests of runs in flight, whose results nobody will deliver."""
        with self._cond:
            runs = [*self._planned, *(self._running if running else ())]
            left = [
                *self._arrived,
                *self._preparing,
                *self._ready.clear(),
                *(request for run in runs for request in run.requests()),
            ]
            self._arrived, self._planned = deque(), deque()
            for request in left:
                request.failed = request.cancelled = True
                self._release(request)
        for request in dict.fromkeys(left):
            resolve(request.loop, [(request.future, None, UnavailableError(why))])

    def _release(self, request: Request) -> None:
        """The request no longer counts against max_queue. Holds the lock."""
        if not request.released:
            request.released = True
            self._pending -= 1

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._arrived or self._finished):
                    free = len(self._running) < self._width
                    if free and self._planned:
                        break
                    if free and self._ready:
                        left = self._due_in()
                        if left <= 0:
                            break
                        self._cond.wait(left)  # newcomers may still join the round
                        continue
                    if self._closing and not (self._ready or self._planned or self._running):
                        return  # everything queued has been answered
                    self._cond.wait()
                finished, self._finished = self._finished, deque()
                self._preparing, self._arrived = list(self._arrived), deque()
            for run, result in finished:
                self._complete(run, result)
            if self._preparing:
                self._prepare(self._preparing)
            self._start_runs()

    def _due_in(self) -> float:
        """Seconds until the next round must start (0: now). Holds the lock; ready is not empty."""
        if not self.config.batching or self._closing or self._round_full():
            return 0.0
        return self._ready.oldest().admitted + self.config.max_wait_ms / 1000 - time.perf_counter()

    def _prepare(self, requests: list[Request]) -> None:
        """Tokenize newly arrived requests (outside the lock) and queue them for rounds. A request
        whose tokenization raises fails alone (Request.tokenize)."""
        answers: list[tuple[Request, np.ndarray | None, BaseException | None]] = []
        cpu0 = time.thread_time()
        for request in requests:
            if request.cancelled:
                continue
            err = request.tokenize(self.runner.dim)
            if err is not None:
                answers.append((request, None, err))
            elif not request.rows:  # nothing to run: answered at once
                answers.append((request, request.out, None))
        self._observer.cpu("tokenization", time.thread_time() - cpu0)
        dropped = 0
        with self._cond:
            for request in requests:
                if request.cancelled or request.failed or not request.rows:
                    dropped += request.cancelled and not request.failed and not request.released
                    self._release(request)
                else:
                    self._ready.add(request, self.config.fair)
            self._preparing = []
        for _ in range(dropped):
            self._observer.dropped()
        for request, value, err in answers:
            resolve(request.loop, [(request.future, value, err)])

    def _round_full(self) -> bool:
        """Enough is ready for a whole round. Holds the lock."""
        most = self.config.max_batch_requests
        return self._ready.tokens >= self.config.max_batch_tokens or (
            most is not None and len(self._ready) >= most
        )

    def _take(self) -> list[tuple[Request, int, int]]:
        """Pop the next round: (request, first row, end row) parts in FIFO order. Holds the lock."""
        c = self.config
        parts, taken, dropped = self._ready.take(
            c.max_batch_tokens, c.max_batch_requests, c.batching, c.fair
        )
        for request in taken:
            self._release(request)
        for _ in range(dropped):
            self._observer.dropped()
        return parts

    def _new_round(self) -> None:
        """Take the next round and queue its runs (none when every ready request's caller has
        left). Holds the lock. Planning it cannot lose its requests: should it raise (a bug), they fail
        with the error."""
        parts = self._take()
        if not parts:
            return
        try:
            self._plan_round(parts)
        except BaseException as e:
            log.exception("planning a round failed")
            for request in dict.fromkeys(request for request, _, _ in parts):
                fail(request, e)

    def _plan_round(self, parts: list[tuple[Request, int, int]]) -> None:
        """Queue a round's runs. Holds the lock."""
        now = time.perf_counter()
        for request, start, _ in parts:
            if start == 0:
                self._observer.queue_wait(now - request.admitted)
        self._planned.extend(cut_round(parts, self._plan, now))

    def _start_runs(self) -> None:
        """Start runs while a stream is free: the last round's, else a new round's if one is due.
        A run that would be alone on the cores runs on all of them; the others go to the streams
        (backend.RunExecutor). Neither blocks the worker."""
        while True:
            with self._cond:
                if len(self._running) >= self._width:
                    return
                if not self._planned:
                    if not self._ready or self._due_in() > 0:
                        return
                    self._new_round()
                    continue
                run = self._planned.popleft().live()  # without callers gone meanwhile
                if not run.rows:
                    self._ended(run.round, 0)
                    continue
                self._running.add(run)
                solo = self._width == 1 or (
                    len(self._running) == 1 and not self._planned and not self._ready
                )
            self._executor.start(run, solo)

    def _run_ended(self, run: Run, result: np.ndarray | Exception, chain: bool) -> Run | None:
        """On the thread that ran it: hand the result to the worker; with chain (a stream), the
        next run for that stream to take at once, or None."""
        with self._cond:
            self._running.discard(run)
            self._finished.append((run, result))
            self._cond.notify()
            return self._chained() if chain else None

    def _chained(self) -> Run | None:
        """The next run for a stream that just freed, now counted as running: the last round's
        next planned run, or the first run of a new round if one is due; None when there is none,
        when that run is empty now (the worker accounts for it), or when it would be alone on the
        cores (the worker gives it the solo thread). Holds the lock. A failure here (a bug) leaves
        the run to the worker, where the same failure stops the worker and answers every caller
        (_work), rather than losing the run on a stream thread nobody watches."""
        try:
            if not self._planned and self._ready and self._due_in() <= 0:
                self._new_round()
            if not self._planned or not (self._running or len(self._planned) > 1 or self._ready):
                return None
            run = self._planned[0].live()
            if not run.rows:
                return None
            self._observer.run(all_threads=False)
        except BaseException:
            log.exception("a stream could not take its next run; leaving it to the worker")
            return None
        self._planned.popleft()
        self._running.add(run)
        return run

    def _complete(self, run: Run, result: np.ndarray | Exception) -> None:
        """On the worker: deliver an ended run and account for its round."""
        try:
            deliver(run, result, self._executor.attempt)
        except BaseException as e:
            log.exception("delivering a run failed")
            for request in run.requests():
                fail(request, e)
        self._ended(run.round, len(run.rows) * self._plan.padded(max(map(len, run.rows))))

    def _ended(self, rnd: Round, padded: int) -> None:
        """One of the round's runs ended (or was skipped, padded=0)."""
        rnd.padded += padded
        rnd.runs_left -= 1
        if rnd.runs_left == 0:
            self._observer.batch(
                rnd.rows, rnd.tokens, rnd.padded, time.perf_counter() - rnd.started
            )
