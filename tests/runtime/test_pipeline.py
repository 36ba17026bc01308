"""Pipeline stages: order kept, bounded read-ahead, the first failure stops everything."""

import threading

import pytest

from embedrt.pipeline import run_stages


def test_items_pass_every_stage_in_order():
    out = []
    run_stages(range(50), [lambda x: x * 2, lambda x: x + 1, out.append], depth=2)
    assert out == [x * 2 + 1 for x in range(50)]


def test_source_runs_at_most_a_bounded_distance_ahead():
    read, ahead = [], []
    release = threading.Event()

    def source():
        for i in range(1000):
            read.append(i)
            yield i

    def slow_sink(i):
        if i == 0:
            release.wait(1.0)  # the sink is stuck; the reader must not run through the input
            ahead.append(len(read))

    run_stages(source(), [lambda x: x, slow_sink], depth=2)
    # item 0 in the sink, 2 queued before each of the two stages, 1 in hand in each thread
    assert ahead[0] <= 1 + 2 * 2 + 2 + 1


def test_a_failing_stage_stops_the_others_and_raises():
    seen = []

    def source():
        for i in range(10**9):  # would never end if the failure did not stop it
            yield i

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
