"""Streams: several runs at once on the CPU, each on a share of the cores, on the tiny model."""

import asyncio
import threading
import time

import numpy as np
import pytest

from embedrt import ConfigError, Encoder, EncodeStats, ModelLoadError
from embedrt.serve.config import BatchingConfig
from embedrt.serve.scheduler import Scheduler
from embedrt.streams import MAX_AUTO_STREAMS, Streams, stream_count

TEXTS = [f"text number {i} {'dog ' * (i % 9)}about a man who plays the guitar" for i in range(200)]


def thread_name(session: object, _: object) -> str:
    return threading.current_thread().name


def streams(count: int = 2) -> Streams[str]:
    return Streams(count, lambda: "the session")


def test_stream_count_auto_explicit_and_invalid():
    assert stream_count(None, 1) == 1
    assert stream_count(None, 2) == 2
    assert stream_count(None, 64) == MAX_AUTO_STREAMS
    assert stream_count(3, 4) == 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="streams must be"):
            stream_count(bad, 4)
    with pytest.raises(
        ConfigError, match="streams must be an integer from 1 to 2, got 3 .each stream needs"
    ):
        stream_count(3, 2)


def test_auto_streams_only_for_a_small_graph(tiny_artifact, monkeypatch):
    """The streams' session is one more copy of the weights: by default a graph file above
    AUTO_STREAMS_MAX_BYTES gets none; an explicit count is honoured whatever the size."""
    import embedrt.streams as streams_module

    assert stream_count(None, 2, graph_bytes=24 << 20) == 2  # MiniLM's int8 file
    assert stream_count(None, 2, graph_bytes=90 << 20) == 1  # MiniLM's fp32 file
    assert stream_count(2, 2, graph_bytes=436 << 20) == 2  # MPNet fp32, asked for
    assert Encoder.load(tiny_artifact, device="cpu", threads=2).info.streams == 2
    size = (tiny_artifact / "model.onnx").stat().st_size
    monkeypatch.setattr(streams_module, "AUTO_STREAMS_MAX_BYTES", size - 1)
    big = Encoder.load(tiny_artifact, device="cpu", threads=2)
    assert big.info.streams == 1 and big.runner._streams is None
    assert Encoder.load(tiny_artifact, device="cpu", threads=2, streams=2).info.streams == 2


def test_encode_on_two_streams_equals_one_after_another(tiny_artifact):
    one = Encoder.load(tiny_artifact, device="cpu", threads=2, streams=1)
    two = Encoder.load(tiny_artifact, device="cpu", threads=2, streams=2)
    assert (one.info.streams, two.info.streams) == (1, 2)
    s1, s2 = EncodeStats(), EncodeStats()
    want, got = one.encode(TEXTS, batch_size=8, stats=s1), two.encode(TEXTS, batch_size=8, stats=s2)
    assert s2.batches >= 20  # many runs, so they went to the streams
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert s1 == s2  # counted once per run, in the caller's thread


def test_batches_go_to_stream_threads_only_when_there_are_enough(tiny_artifact):
    enc = Encoder.load(tiny_artifact, device="cpu", threads=2, streams=2)
    rows = enc.tokenize(TEXTS[:6])
    seen: list[str] = []
    run = enc.runner._run_on

    def recording(session, batch, *args):
        seen.append(threading.current_thread().name)
        return run(session, batch, *args)

    enc.runner._run_on = recording  # type: ignore[method-assign]
    here = threading.current_thread().name
    list(enc.runner.run_many([rows], 1))  # one batch: all threads, the caller's
    assert seen == [here]
    seen.clear()
    list(enc.runner.run_many([[r] for r in rows], 6))
    assert len(seen) == 6 and all(n.startswith("embedrt-stream") for n in seen)
    one = Encoder.load(tiny_artifact, device="cpu", threads=2, streams=1)
    assert one.runner.width == 1 and enc.runner.width == 2


def test_streams_hand_each_call_the_shared_session_and_keep_order():
    s = streams()

    def slow_first(session: str, i: int) -> tuple[str, int]:
        time.sleep(0.05 if i % 2 == 0 else 0.0)
        return session, i

    items = (i for i in range(9))  # a generator: pulled as the streams free up
    assert list(s.map(slow_first, items)) == [("the session", i) for i in range(9)]
    names = set(s.map(thread_name, range(8)))
    assert names and all(n.startswith("embedrt-stream") for n in names)


def test_an_error_in_one_call_reaches_the_caller_and_the_rest_is_dropped(tiny_artifact):
    s = streams()
    started = []

    def fails_third(session: str, i: int) -> int:
        started.append(i)
        if i == 2:
            raise ValueError("run 2 broke")
        time.sleep(0.01)
        return i

    with pytest.raises(ValueError, match="run 2 broke"):
        list(s.map(fails_third, range(50)))
    assert len(started) < 50  # the rest of the call was dropped, not run
    assert list(s.map(lambda session, i: i, range(4))) == [0, 1, 2, 3]  # the streams go on


def test_encode_inside_a_stream_runs_there_without_deadlock(tiny_artifact):
    enc = Encoder.load(tiny_artifact, device="cpu", threads=2, streams=2)
    want = enc.encode(TEXTS[:40], batch_size=4)
    nested = [
        enc.runner.on_stream(lambda run: enc.encode(TEXTS[:40], batch_size=4)) for _ in range(4)
    ]
    for future in nested:
        np.testing.assert_allclose(future.result(60), want, atol=1e-6)


def test_the_streams_session_is_made_on_first_use_from_a_verified_file(tiny_copy):
    enc = Encoder.load(tiny_copy, device="cpu", threads=2, streams=2)
    model = tiny_copy / enc.info.file
    model.write_bytes(model.read_bytes()[:-100])  # corrupted after load, before the first big call
    single = enc.encode("still works on the session loaded and checked at load")
    assert single.shape == (enc.dim,)
    with pytest.raises(ModelLoadError, match="corrupted"):
        enc.encode(TEXTS, batch_size=8)


def test_scheduler_rounds_on_two_streams_answer_each_caller_its_own_rows(tiny_artifact):
    enc = Encoder.load(tiny_artifact, device="cpu", threads=2, streams=2)
    budget = int(enc.count_tokens(TEXTS[:60]).sum())
    config = BatchingConfig(max_wait_ms=60_000, max_batch_tokens=budget, batch_size=4)
    sched = Scheduler(enc.runner, config)
    sched.start()
    groups = [TEXTS[i : i + 3] for i in range(0, 60, 3)]  # 20 callers, 60 rows, >= 15 runs

    async def main():
        jobs = [sched.submit(lambda g=g: enc.tokenize(g)) for g in groups]
        return await asyncio.gather(*(j.future for j in jobs))

    results = asyncio.run(main())
    sched.close()
    for texts, got in zip(groups, results, strict=True):
        np.testing.assert_allclose(got, enc.encode(texts), atol=1e-6)


def test_on_stream_goes_to_a_stream_or_runs_in_place(tiny_artifact):
    rows = Encoder.load(tiny_artifact, device="cpu").tokenize(TEXTS[:5])

    def where_and_vectors(run):
        return threading.current_thread().name, run(rows)

    two = Encoder.load(tiny_artifact, device="cpu", threads=2, streams=2)
    name, vecs = two.runner.on_stream(where_and_vectors).result(30)
    assert name.startswith("embedrt-stream")
    one = Encoder.load(tiny_artifact, device="cpu", threads=2, streams=1)
    done = one.runner.on_stream(where_and_vectors)  # no streams: run now, here
    assert done.done() and done.result()[0] == threading.current_thread().name
    np.testing.assert_allclose(vecs, done.result()[1], atol=1e-6)
    failing = one.runner.on_stream(lambda run: 1 / 0)
    assert isinstance(failing.exception(), ZeroDivisionError)
