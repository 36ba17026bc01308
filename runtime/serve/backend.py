"""The scheduler's backend: what it needs of a model, where it reports, and how a run runs.

    BatchRunner        the model side (embedrt's Runner, Encoder.runner, is one)
    SchedulerObserver  where the scheduler reports what it does (the server's metrics)
    RunExecutor        runs a Run alone on every thread (a thread of its own) or on a stream,
                       and hands the result back on that thread

Neither the worker thread nor the event loop ever waits for inference: a run goes to the
executor, and its end comes back through the scheduler's `ended` callback, which also gives a
stream its next run at once (handing that to the worker and back would cost two wake-ups while
the stream sat idle).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np

from ..batching import BatchPlan
from ..runner import Rows, RunFn
from .queue import Run

log = logging.getLogger("embedrt.scheduler")

Result = np.ndarray | Exception  # a run's vectors, or the error it raised


class BatchRunner(Protocol):
    """What the scheduler needs of a model: embedrt's Runner (Encoder.runner) is one."""

    @property
    def plan(self) -> BatchPlan: ...  # the device's pad multiple and run cost

    @property
    def width(self) -> int: ...  # runs at once (streams)

    @property
    def dim(self) -> int: ...

    def run(self, rows: Rows) -> np.ndarray: ...  # alone, on every thread

    def on_stream(self, work: Callable[[RunFn], None]) -> Future[None]: ...


class SchedulerObserver(Protocol):
    """Where the scheduler reports what it does (the server's metrics)."""

    def batch(self, rows: int, tokens: int, padded: int, seconds: float) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...

    def dropped(self) -> None: ...

    # CPU seconds of the thread that did the work (time.thread_time), called from it: work =
    # "inference" (a run, on its stream or solo thread) or "tokenization" (on the worker). Not
    # counted: ONNX Runtime's pool threads, which only a run on all threads uses (see run), and
    # the tokenizer's own threads, which only a request of many texts uses.
    def cpu(self, work: str, seconds: float) -> None: ...

    # A run started: on one stream's thread, or alone on all the runner's threads.
    def run(self, all_threads: bool) -> None: ...


class NoObserver:
    """A SchedulerObserver that ignores everything."""

    def batch(self, rows: int, tokens: int, padded: int, seconds: float) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...

    def dropped(self) -> None: ...

    def cpu(self, work: str, seconds: float) -> None: ...

    def run(self, all_threads: bool) -> None: ...


class RunExecutor:
    """Starts runs on the runner. `ended(run, result, chain)` is called on the thread that ran
    it; with chain (a stream), what it returns is the next run for that stream (None: free)."""

    def __init__(
        self,
        runner: BatchRunner,
        observer: SchedulerObserver,
        ended: Callable[[Run, Result, bool], Run | None],
    ):
        self._runner = runner
        self._observer = observer
        self._ended = ended
        # Runs alone on the cores (and every run without streams: a GPU, streams=1).
        self._solo = ThreadPoolExecutor(1, thread_name_prefix="embedrt-run")

    def start(self, run: Run, solo: bool) -> None:
        """Run it alone on every thread (lower latency than a stream's share of the cores), or
        on the next free stream."""
        self._observer.run(all_threads=solo)
        if solo:
            self._solo.submit(self._runs, run, self._runner.run, False)
        else:
            self._runner.on_stream(functools.partial(self._runs, run, chain=True))

    def attempt(self, run: Run, execute: RunFn | None = None) -> Result:
        """One inference run (on every thread unless execute is a stream's): its vectors, or
        the Exception it raised."""
        cpu0 = time.thread_time()
        try:
            return (execute or self._runner.run)(run.rows)
        except Exception as err:
            return err
        finally:
            self._observer.cpu("inference", time.thread_time() - cpu0)

    def shutdown(self) -> None:
        self._solo.shutdown(wait=False)

    def _runs(self, first: Run, execute: RunFn, chain: bool) -> None:
        """The run, its result handed back, and with chain the next runs it is given."""
        run: Run | None = first
        while run is not None:
            try:
                result = self.attempt(run, execute)
            except BaseException as e:  # not an inference error (those are returned)
                log.exception("an inference run failed")  # never lose a caller
                result = e if isinstance(e, Exception) else RuntimeError(f"interrupted: {e!r}")
            run = self._ended(run, result, chain)
