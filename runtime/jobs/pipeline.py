"""Stages in threads joined by bounded queues, so reading, tokenizing, inference and writing overlap.

    run_stages(read_chunks(), [tokenize, infer, write], depth=2)

The source is iterated in one thread and each stage runs in its own, taking the previous one's
results in order. A queue holds at most `depth` items, so a fast stage waits for a slow one
instead of piling data up: memory stays bounded whatever the input size. The threads overlap
because the heavy calls (ONNX Runtime run, the tokenizer's batch encode, file writes) release
the GIL. The first exception in any thread stops every stage and is raised in the caller;
Ctrl-C in the caller stops them too.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

_END = object()
_POLL_S = 0.1  # how often a blocked thread looks whether another one failed


class _Stopped(Exception):
    """Raised inside a stage thread when another thread failed: unwinds it quietly."""


def run_stages(
    source: Iterable[Any], stages: Sequence[Callable[[Any], Any]], depth: int = 2
) -> None:
    """Feed source through stages in order; the last stage's results are dropped (it is the sink)."""
    stop = threading.Event()
    errors: list[BaseException] = []
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=depth) for _ in stages]

    def put(q: queue.Queue[Any], item: Any) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                pass
        raise _Stopped

    def get(q: queue.Queue[Any]) -> Any:
        while not stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                pass
        raise _Stopped

    def feed() -> None:
        for item in source:
            put(queues[0], item)
        put(queues[0], _END)

    def work(i: int) -> None:
        last = i + 1 == len(stages)
        while (item := get(queues[i])) is not _END:
            out = stages[i](item)
            if not last:
                put(queues[i + 1], out)
        if not last:
            put(queues[i + 1], _END)

    def guard(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=guard, args=(feed,), name="stage-source", daemon=True)]
    threads += [
        threading.Thread(target=guard, args=(work, i), name=f"stage-{i}", daemon=True)
        for i in range(len(stages))
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(_POLL_S)  # a timed join lets Ctrl-C reach this thread
    except BaseException:
        stop.set()
        for t in threads:
            t.join(timeout=30)  # let a write in progress finish; it is atomic either way
        raise
    if errors:
        raise errors[0]
