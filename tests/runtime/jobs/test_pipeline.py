"""Pipeline stages: order kept, bounded read-ahead, the first failure stops everything."""

import threading
import time

import pytest

from embedrt.jobs.pipeline import run_stages


def test_items_pass_every_stage_in_order():
    out = []
    run_stages(range(50), [lambda x: x * 2, lambda x: x + 1, out.append], depth=2)
    assert out == [x * 2 + 1 for x in range(50)]


def test_source_runs_at_most_a_bounded_distance_ahead():
    # Stuck on item 0, the sink holds it; 2 wait before each of the two stages, and the source
    # and the first stage hold 1 each, blocked on a full queue: 7 items read, no more.
    bound = 1 + 2 * 2 + 2
    read, ahead = [], []
    filled = threading.Event()

    def source():
        for i in range(1000):
            read.append(i)
            if len(read) == bound:
                filled.set()
            yield i

    def slow_sink(i):
        if i == 0:
            assert filled.wait(30), (
                f"the reader stopped at {len(read)} items, before filling the queues"
            )
            time.sleep(0.2)  # room for a reader that ignores the bound to run on
            ahead.append(len(read))

    run_stages(source(), [lambda x: x, slow_sink], depth=2)
    assert ahead == [bound]


def test_a_failing_stage_stops_the_others_and_raises():
    seen = []

    def source():
        yield from range(10**9)

    def boom(x):
        if x == 5:
            raise ValueError("stage failed at 5")
        return x

    with pytest.raises(ValueError, match="stage failed at 5"):
        run_stages(source(), [boom, seen.append], depth=2)
    assert seen == [0, 1, 2, 3, 4]


def test_a_failing_source_raises():
    def source():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        run_stages(source(), [lambda x: x], depth=1)


def test_empty_source():
    out = []
    run_stages(iter(()), [out.append])
    assert out == []
