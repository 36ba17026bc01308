"""Dynamic batching on the tiny model, in-process: coalescing, splitting, dropping, bounds."""

import asyncio
import logging
import threading

import numpy as np
import pytest
from fixtures.gated import GatedRunner
from fixtures.tiny_model import poison

from embedrt import ConfigError, EmbedrtError, Encoder, OverloadedError
from embedrt.errors import InputError, UnavailableError
from embedrt.serve.config import BatchingConfig
from embedrt.serve.scheduler import Scheduler, SchedulerObserver

TEXTS = [
    ["the man plays guitar"],
    ["a woman cooks food in the kitchen", "dog"],
    ["the quick brown fox jumps over the lazy dog", "a", "someone is playing an instrument"],
    ["market fell sharply on monday"],
    ["the cat", "the cat is on the lazy dog and the man is playing music in the kitchen"],
]


class Recorder(SchedulerObserver):
    def __init__(self):
        self.batches, self.waits, self.drops = [], [], 0
        self.cpu_seconds = {"inference": 0.0, "tokenization": 0.0}
        self.all_threads = []  # per run started: alone on all threads?

    def batch(self, rows, tokens, padded, seconds):
        self.batches.append((rows, tokens, padded))

    def queue_wait(self, seconds):
        self.waits.append(seconds)

    def dropped(self):
        self.drops += 1

    def cpu(self, work, seconds):
        self.cpu_seconds[work] += seconds

    def run(self, all_threads):
        self.all_threads.append(all_threads)


def started(runner, **config):
    rec = Recorder()
    sched = Scheduler(runner, BatchingConfig(**config), rec)
    sched.start()
    return sched, rec


def submit(sched, encoder, texts):
    """A job whose texts the worker tokenizes."""
    return sched.submit(lambda: encoder.tokenize(texts))


async def embed(sched, encoder, texts):
    return await submit(sched, encoder, texts).future


class StuckTokenizing:
    """A job's `prepare` that holds the worker until released: the worker provably busy
    tokenizing."""

    def __init__(self, encoder):
        self._encoder = encoder
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self):
        self.entered.set()
        self.release.wait(60)
        return self._encoder.tokenize(["a dog"])


def test_concurrent_requests_coalesce_and_each_gets_its_own_rows(tiny_encoder):
    # The round starts when the five jobs fill the token budget (the wait is a minute), so it
    # holds all five however slowly a loaded machine runs the callers.
    budget = int(tiny_encoder.count_tokens(sum(TEXTS, [])).sum())
    sched, rec = started(tiny_encoder.runner, max_wait_ms=60_000, max_batch_tokens=budget)

    async def main():
        return await asyncio.gather(*(embed(sched, tiny_encoder, t) for t in TEXTS))

    results = asyncio.run(main())
    sched.close()
    for texts, got in zip(TEXTS, results, strict=True):
        np.testing.assert_allclose(got, tiny_encoder.encode(texts), atol=1e-6)
    total = sum(map(len, TEXTS))
    assert [b[0] for b in rec.batches] == [total]  # one round for all five callers
    assert rec.batches[0][1] == int(tiny_encoder.count_tokens(sum(TEXTS, [])).sum())
    assert rec.batches[0][2] >= rec.batches[0][1]  # padded area covers the real tokens
    assert len(rec.waits) == len(TEXTS) and sched.depth == 0
    # the runs' and the tokenizer's CPU time, measured on the threads that did them
    assert rec.cpu_seconds["inference"] > 0 and rec.cpu_seconds["tokenization"] > 0


def test_a_request_over_the_token_budget_is_split_across_rounds(tiny_encoder):
    texts = [f"the man plays guitar {'dog ' * (i % 5)}" for i in range(12)]
    sched, rec = started(tiny_encoder.runner, max_batch_tokens=30, max_wait_ms=0)
    got = asyncio.run(embed(sched, tiny_encoder, texts))
    sched.close()
    np.testing.assert_allclose(got, tiny_encoder.encode(texts), atol=1e-6)
    assert len(rec.batches) > 1 and sum(b[0] for b in rec.batches) == len(texts)
    assert all(tokens <= 30 for _, tokens, _ in rec.batches)


def test_a_cancelled_request_is_dropped_before_inference(tiny_encoder):
    sched, rec = started(tiny_encoder.runner, max_wait_ms=60_000)

    async def main():
        kept = submit(sched, tiny_encoder, ["a dog"])
        gone = submit(sched, tiny_encoder, ["the cat", "the man"])
        sched.cancel(gone)  # its client disconnected while it waited
        await asyncio.to_thread(sched.close)  # ends the round's wait: both jobs are in it
        return await kept.future

    got = asyncio.run(main())
    np.testing.assert_allclose(got, tiny_encoder.encode(["a dog"]), atol=1e-6)
    assert rec.drops == 1 and [b[0] for b in rec.batches] == [1] and sched.depth == 0


def test_a_round_whose_every_caller_left_is_skipped_and_the_worker_lives_on(tiny_encoder):
    sched, rec = started(tiny_encoder.runner, max_wait_ms=200)

    async def main():
        gone = submit(sched, tiny_encoder, ["a dog"])
        for _ in range(1000):  # until the worker has tokenized it and it waits for its round
            if gone.tokens:
                break
            await asyncio.sleep(0.001)
        sched.cancel(gone)  # before its round is due: the round is left with nothing to run
        await asyncio.sleep(0.3)
        return await asyncio.wait_for(embed(sched, tiny_encoder, ["the cat"]), 30)

    got = asyncio.run(main())
    assert sched.alive
    sched.close()
    np.testing.assert_allclose(got, tiny_encoder.encode(["the cat"]), atol=1e-6)
    assert rec.drops == 1 and [b[0] for b in rec.batches] == [1]


def test_the_queue_is_bounded_and_frees_its_places(tiny_encoder):
    gated = GatedRunner(tiny_encoder)
    sched, rec = started(gated, max_queue=2, max_wait_ms=0)

    async def main():
        running = submit(sched, tiny_encoder, ["a dog"])
        assert await asyncio.to_thread(gated.entered.wait, 30)  # taken: no longer queued
        a, b = submit(sched, tiny_encoder, ["the cat"]), submit(sched, tiny_encoder, ["the man"])
        with pytest.raises(OverloadedError, match="queue is full"):
            submit(sched, tiny_encoder, ["a fox"])
        assert sched.depth == 2
        sched.cancel(b)  # its client left: the worker drops it when it gets there
        gated.release.set()
        results = await asyncio.wait_for(asyncio.gather(running.future, a.future), 30)
        for _ in range(3000):  # b is released when the worker reaches it
            if not sched.depth:
                break
            await asyncio.sleep(0.01)
        assert rec.drops == 1 and not b.future.done()
        await asyncio.wait_for(embed(sched, tiny_encoder, ["a fox"]), 30)  # places are free again
        return results

    running, a = asyncio.run(main())
    sched.close()
    np.testing.assert_allclose(running, tiny_encoder.encode(["a dog"]), atol=1e-6)
    np.testing.assert_allclose(a, tiny_encoder.encode(["the cat"]), atol=1e-6)


def test_without_batching_each_request_runs_alone(tiny_encoder):
    sched, rec = started(tiny_encoder.runner, batching=False)

    async def main():
        return await asyncio.gather(*(embed(sched, tiny_encoder, t) for t in TEXTS))

    results = asyncio.run(main())
    sched.close()
    for texts, got in zip(TEXTS, results, strict=True):
        np.testing.assert_allclose(got, tiny_encoder.encode(texts), atol=1e-6)
    assert sorted(b[0] for b in rec.batches) == sorted(map(len, TEXTS))


def test_a_failing_request_does_not_fail_its_batch_mates(tiny_copy, caplog):
    # A word whose id is past the graph's embedding table fails inside ONNX Runtime: a real,
    # unexpected inference error, for the one request that holds it.
    word = poison(tiny_copy)
    enc = Encoder.load(tiny_copy, device="cpu")
    sched, _ = started(enc.runner, max_wait_ms=60_000)
    good_text = "the dog plays music"  # as long as the bad row: they share a run

    async def main():
        jobs = [submit(sched, enc, t) for t in ([good_text], [f"the {word} plays music"])]
        await asyncio.to_thread(sched.close)  # ends the round's wait: both jobs are in it
        return await asyncio.gather(*(j.future for j in jobs), return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="embedrt.scheduler"):
        good, bad = asyncio.run(main())
    np.testing.assert_allclose(good, enc.encode([good_text]), atol=1e-6)
    # ONNX Runtime's own exception reaches the caller (the server logs it and answers 500)
    assert isinstance(bad, Exception) and not isinstance(bad, EmbedrtError)
    assert "a batch of 2 requests failed; retrying each request alone" in caplog.text
    assert sched.depth == 0


def test_close_answers_everything_queued_then_refuses(tiny_encoder):
    sched, rec = started(tiny_encoder.runner, max_wait_ms=60_000)

    async def main():
        futures = [submit(sched, tiny_encoder, t).future for t in TEXTS]
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, sched.close)
        results = await asyncio.gather(*futures)
        with pytest.raises(UnavailableError):
            submit(sched, tiny_encoder, ["a dog"])
        return results

    results = asyncio.run(main())
    assert [len(r) for r in results] == [len(t) for t in TEXTS]
    assert sum(b[0] for b in rec.batches) == sum(map(len, TEXTS))


def test_a_request_whose_tokenization_fails_fails_alone(tiny_encoder):
    budget = 2 * int(tiny_encoder.count_tokens(["a dog"]).sum())
    sched, rec = started(tiny_encoder.runner, max_wait_ms=60_000, max_batch_tokens=budget)

    def refuse():
        raise InputError("'input[0]' is too long")

    async def main():
        jobs = [
            submit(sched, tiny_encoder, ["a dog"]),
            sched.submit(refuse),
            submit(sched, tiny_encoder, ["a dog"]),
        ]
        return await asyncio.wait_for(
            asyncio.gather(*(j.future for j in jobs), return_exceptions=True), 30
        )

    first, refused, last = asyncio.run(main())
    sched.close()
    assert isinstance(refused, InputError) and "too long" in str(refused)
    for got in (first, last):
        np.testing.assert_allclose(got, tiny_encoder.encode(["a dog"]), atol=1e-6)
    assert [b[0] for b in rec.batches] == [2] and sched.depth == 0  # the other two: one round


def test_a_request_is_answered_when_its_run_ends_not_its_round(tiny_encoder):
    # "a" and a 52-token text cost less as two runs than as one padded run (batching.py), and
    # a round runs its shortest run first: that caller is answered while the long run is held.
    gated = GatedRunner(tiny_encoder, gated=2)
    texts = (["a"], ["dog " * 50])
    budget = int(tiny_encoder.count_tokens(sum(texts, [])).sum())
    sched, rec = started(gated, max_wait_ms=60_000, max_batch_tokens=budget)

    async def main():
        short, long = (submit(sched, tiny_encoder, t) for t in texts)
        try:
            got = await asyncio.wait_for(short.future, 30)  # answered before the gate opens
            assert await asyncio.to_thread(gated.entered.wait, 30)  # the long run is held...
            assert not long.future.done()  # ...so its caller is still waiting
        finally:
            gated.release.set()
        return got, await asyncio.wait_for(long.future, 30)

    short, long = asyncio.run(main())
    sched.close()
    np.testing.assert_allclose(short, tiny_encoder.encode(["a"]), atol=1e-6)
    np.testing.assert_allclose(long, tiny_encoder.encode(["dog " * 50]), atol=1e-6)
    assert [b[0] for b in rec.batches] == [2]  # both in one round


def test_submit_after_close_is_refused(tiny_encoder):
    sched, _ = started(tiny_encoder.runner)

    async def main():
        await asyncio.to_thread(sched.close)
        with pytest.raises(UnavailableError, match="not running"):
            submit(sched, tiny_encoder, ["a dog"])
        assert sched.depth == 0

    asyncio.run(main())


@pytest.fixture(scope="module")
def one_stream(tiny_artifact):
    """The tiny model on one stream: one run at a time."""
    return Encoder.load(tiny_artifact, device="cpu", threads=2, streams=1)


@pytest.fixture(scope="module")
def two_streams(tiny_artifact):
    return Encoder.load(tiny_artifact, device="cpu", threads=2, streams=2)


def test_close_fails_the_requests_still_queued_when_its_timeout_ends(one_stream):
    gated = GatedRunner(one_stream)
    sched, _ = started(gated, max_wait_ms=0)

    async def main():
        running = submit(sched, one_stream, ["a dog"]).future
        assert await asyncio.to_thread(gated.entered.wait, 30)  # its run holds the one stream
        queued = submit(sched, one_stream, ["the cat"]).future
        try:
            await asyncio.to_thread(sched.close, 0.1)  # the worker is stuck: the timeout ends
            with pytest.raises(UnavailableError, match="shut down before"):
                await asyncio.wait_for(queued, 10)
            assert sched.depth == 0
        finally:
            gated.release.set()
        return await asyncio.wait_for(running, 30)  # the run in flight still completes

    np.testing.assert_allclose(asyncio.run(main()), one_stream.encode(["a dog"]), atol=1e-6)


def test_a_free_stream_takes_new_requests_while_a_run_is_in_flight(two_streams):
    # Continuous batching: the first job's run is held; a job that arrives meanwhile starts on
    # the other stream at once and is answered, instead of waiting for the held run's round.
    gated = GatedRunner(two_streams)
    sched, rec = started(gated, max_wait_ms=0)

    async def main():
        held = submit(sched, two_streams, ["a dog"]).future
        try:
            assert await asyncio.to_thread(gated.entered.wait, 30)
            later = await asyncio.wait_for(submit(sched, two_streams, ["the cat"]).future, 30)
            assert not held.done()  # its run is still held at the gate
        finally:
            gated.release.set()
        return await asyncio.wait_for(held, 30), later

    held, later = asyncio.run(main())
    sched.close()
    np.testing.assert_allclose(held, two_streams.encode(["a dog"]), atol=1e-6)
    np.testing.assert_allclose(later, two_streams.encode(["the cat"]), atol=1e-6)
    assert sorted(b[0] for b in rec.batches) == [1, 1]  # two rounds, the second one overlapping
    assert rec.all_threads == [True, False]  # the held run was alone on the cores; the next one not


def test_a_freed_stream_starts_the_rounds_next_run_without_the_worker(two_streams):
    # A round of four one-row runs; the first run is held at the gate, and the worker is then
    # kept busy tokenizing another job. The other stream must still run the round's remaining
    # runs one after another: it takes each itself instead of waiting for the worker.
    gated = GatedRunner(two_streams)
    sched, rec = started(gated, max_wait_ms=0, batch_size=1)
    texts = ["a dog", "the cat sat", "the man plays a guitar", "a woman is slicing an onion today"]
    stuck = StuckTokenizing(two_streams)

    async def main():
        round_ = submit(sched, two_streams, texts).future
        other = None
        try:
            assert await asyncio.to_thread(gated.entered.wait, 30)
            other = sched.submit(stuck).future
            assert await asyncio.to_thread(stuck.entered.wait, 30)
            for _ in range(300):  # up to 30 s for the three runs not held
                if gated.runs == len(texts):
                    break
                await asyncio.sleep(0.1)
            ran = gated.runs
        finally:
            gated.release.set()
            stuck.release.set()
        return ran, await asyncio.wait_for(round_, 30), await asyncio.wait_for(other, 30)

    ran, got, other = asyncio.run(main())
    sched.close()
    assert ran == len(texts)  # all four started while the worker was still tokenizing
    np.testing.assert_allclose(got, two_streams.encode(texts), atol=1e-6)
    np.testing.assert_allclose(other, two_streams.encode(["a dog"]), atol=1e-6)
    assert rec.all_threads[:4] == [False] * 4  # the round's four runs, all on the streams


class FailsOnStreams(Recorder):
    """An observer with a bug that shows only when a stream starts a run itself."""

    def run(self, all_threads):
        if threading.current_thread().name.startswith("embedrt-stream"):
            raise RuntimeError("observer bug")
        super().run(all_threads)


def test_a_stream_that_cannot_start_its_next_run_leaves_it_to_the_worker(two_streams, caplog):
    rec = FailsOnStreams()
    sched = Scheduler(two_streams.runner, BatchingConfig(max_wait_ms=0, batch_size=1), rec)
    sched.start()
    texts = [
        "a dog",
        "the cat sat",
        "the man plays a guitar",
        "a woman is slicing an onion",
        "x y",
        "z",
    ]

    async def main():
        return await asyncio.wait_for(submit(sched, two_streams, texts).future, 30)

    got = asyncio.run(main())
    sched.close(30)
    np.testing.assert_allclose(got, two_streams.encode(texts), atol=1e-6)
    assert len(rec.all_threads) == len(texts) and sched.depth == 0  # the worker started each run
    assert "could not take its next run" in caplog.text


def test_a_round_that_cannot_be_planned_fails_its_requests_instead_of_losing_them(
    tiny_encoder, monkeypatch, caplog
):
    import embedrt.serve.scheduler as scheduler_module

    real, calls = scheduler_module.cut_round, []

    def cut_once_badly(*args):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("planning bug")
        return real(*args)

    monkeypatch.setattr(scheduler_module, "cut_round", cut_once_badly)
    sched, _ = started(tiny_encoder.runner, max_wait_ms=0)

    async def main():
        bad = await asyncio.wait_for(
            asyncio.gather(submit(sched, tiny_encoder, ["a dog"]).future, return_exceptions=True),
            30,
        )
        return bad[0], await asyncio.wait_for(embed(sched, tiny_encoder, ["the cat"]), 30)

    bad, good = asyncio.run(main())
    sched.close()
    assert isinstance(bad, RuntimeError) and "planning bug" in str(bad) and sched.depth == 0
    np.testing.assert_allclose(good, tiny_encoder.encode(["the cat"]), atol=1e-6)
    assert "planning a round failed" in caplog.text


def test_inference_cpu_is_the_run_threads_cpu_not_its_wall_time(tiny_encoder):
    gated = GatedRunner(tiny_encoder)
    sched, rec = started(gated, max_wait_ms=0)

    async def main():
        job = submit(sched, tiny_encoder, ["a dog"]).future
        try:
            assert await asyncio.to_thread(gated.entered.wait, 30)
            await asyncio.sleep(0.5)  # the run waits at the gate: wall time passes, CPU hardly
        finally:
            gated.release.set()
        return await asyncio.wait_for(job, 30)

    asyncio.run(main())
    sched.close()
    assert 0 < rec.cpu_seconds["inference"] < 0.25


def test_each_request_is_answered_on_its_own_event_loop(tiny_encoder, caplog):
    # Two callers on two loops (threads) share one round. In debug mode a future settled from
    # another loop's thread raises there ("Non-thread-safe operation"), logged by asyncio, and
    # its waiter is only woken by its timeout.
    a, b = tiny_encoder.tokenize(["a dog"]), tiny_encoder.tokenize(["the man plays guitar"])
    sched, rec = started(
        tiny_encoder.runner, max_wait_ms=60_000, max_batch_tokens=sum(map(len, a + b))
    )

    def other_loop():
        async def main():
            return await asyncio.wait_for(sched.submit(lambda: b).future, 10)

        return asyncio.run(main(), debug=True)

    async def main():
        mine = sched.submit(lambda: a).future
        theirs = await asyncio.to_thread(other_loop)
        return await asyncio.wait_for(mine, 10), theirs

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        got_a, got_b = asyncio.run(main(), debug=True)
    sched.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    np.testing.assert_allclose(got_a, tiny_encoder.encode(["a dog"]), atol=1e-6)
    np.testing.assert_allclose(got_b, tiny_encoder.encode(["the man plays guitar"]), atol=1e-6)
    assert [r[0] for r in rec.batches] == [2]  # one round held both


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_batch_tokens", 0),
        ("max_queue", -1),
        ("max_batch_requests", 0),
        ("batch_size", 1.5),
        ("max_wait_ms", -1),
    ],
)
def test_config_is_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        BatchingConfig(**{field: value})


def test_requests_arriving_while_the_worker_tokenizes_start_the_round_without_waiting(tiny_encoder):
    # The budget is both jobs' tokens and the wait a minute: the round must start as soon as the
    # second job, submitted while the first was being tokenized, is tokenized too.
    budget = 2 * int(tiny_encoder.count_tokens(["a dog"]).sum())
    sched, rec = started(tiny_encoder.runner, max_wait_ms=60_000, max_batch_tokens=budget)
    tokenizing = threading.Event()

    def slow():
        tokenizing.set()
        threading.Event().wait(0.3)
        return tiny_encoder.tokenize(["a dog"])

    async def main():
        first = sched.submit(slow)
        assert await asyncio.to_thread(tokenizing.wait, 10)
        second = submit(sched, tiny_encoder, ["a dog"])
        return await asyncio.wait_for(asyncio.gather(first.future, second.future), 20)

    for got in asyncio.run(main()):
        np.testing.assert_allclose(got, tiny_encoder.encode(["a dog"]), atol=1e-6)
    sched.close()
    assert [b[0] for b in rec.batches] == [2]


class Panic(BaseException):
    """What a panic inside the Rust tokenizer library surfaces as: not an Exception."""


def test_a_tokenizer_panic_fails_its_request_alone_and_the_worker_lives_on(tiny_encoder):
    sched, _ = started(tiny_encoder.runner, max_wait_ms=0)

    def panic():
        raise Panic("tokenizer panicked")

    async def main():
        bad = await asyncio.gather(sched.submit(panic).future, return_exceptions=True)
        good = await asyncio.wait_for(embed(sched, tiny_encoder, ["a dog"]), 30)
        return bad[0], good

    bad, good = asyncio.run(main())
    assert isinstance(bad, Panic) and sched.alive and sched.depth == 0
    np.testing.assert_allclose(good, tiny_encoder.encode(["a dog"]), atol=1e-6)
    sched.close()


def test_a_request_with_no_rows_is_answered_empty(tiny_encoder):
    sched, rec = started(tiny_encoder.runner)

    async def main():
        return await asyncio.wait_for(sched.submit(lambda: []).future, 30)

    got = asyncio.run(main())
    sched.close()
    assert got.shape == (0, tiny_encoder.dim) and rec.batches == [] and sched.depth == 0


def test_close_fails_a_request_the_worker_is_still_tokenizing(tiny_encoder):
    sched, rec = started(tiny_encoder.runner, max_wait_ms=0)
    stuck = StuckTokenizing(tiny_encoder)

    async def main():
        job = sched.submit(stuck)
        assert await asyncio.to_thread(stuck.entered.wait, 10)
        try:
            await asyncio.to_thread(sched.close, 0.1)  # the worker is stuck tokenizing
            with pytest.raises(UnavailableError, match="shut down before"):
                await asyncio.wait_for(job.future, 10)
            assert sched.depth == 0
        finally:
            stuck.release.set()

    asyncio.run(main())
    sched._thread.join(10)
    assert not sched._thread.is_alive() and rec.batches == []  # it never ran after all


def test_max_batch_requests_caps_a_round_and_starts_it_without_waiting(tiny_encoder):
    # A minute's wait and a large token budget: only the request cap can start these rounds.
    sched, rec = started(tiny_encoder.runner, max_wait_ms=60_000, max_batch_requests=2)

    async def main():
        jobs = [submit(sched, tiny_encoder, [t]) for t in ("a dog", "the cat", "a man", "the fox")]
        return await asyncio.wait_for(asyncio.gather(*(j.future for j in jobs)), 30)

    results = asyncio.run(main())
    sched.close()
    assert [b[0] for b in rec.batches] == [2, 2]
    for text, got in zip(("a dog", "the cat", "a man", "the fox"), results, strict=True):
        np.testing.assert_allclose(got, tiny_encoder.encode([text]), atol=1e-6)


@pytest.mark.parametrize("fair", [True, False])
def test_a_small_request_waits_for_one_round_of_a_big_one_not_all_of_it(one_stream, fair):
    big = [f"text {i} " + "dog " * 20 for i in range(40)]  # 24 tokens each: ten rounds of 100
    gated = GatedRunner(one_stream)  # the big request's first run waits: the small one is queued
    sched, rec = started(gated, max_batch_tokens=100, max_wait_ms=0, fair=fair)
    small = one_stream.tokenize(["a small one"])[0]

    async def main():
        b = submit(sched, one_stream, big)
        assert await asyncio.to_thread(gated.entered.wait, 30)
        s = submit(sched, one_stream, ["a small one"])
        for _ in range(3000):  # the worker has tokenized it and put it in line
            if len(sched._ready) == 2:
                break
            await asyncio.sleep(0.01)
        gated.release.set()
        return await asyncio.wait_for(asyncio.gather(b.future, s.future), 60)

    got_big, got_small = asyncio.run(main())
    sched.close()
    np.testing.assert_allclose(got_big, one_stream.encode(big), atol=1e-6)
    np.testing.assert_allclose(got_small, one_stream.encode(["a small one"]), atol=1e-6)
    runs = gated.rows  # in the order they started
    ahead = sum(len(r) for r in runs[: next(k for k, r in enumerate(runs) if small in r)])
    if fair:  # the round in flight when it came (4 rows), and at most its own round's rest
        assert ahead <= 8
    else:  # FIFO: behind every round of it but the last, which it shares
        assert ahead >= len(big) - 4


def test_a_big_request_yields_to_arrivals_but_is_never_starved():
    # Pure queue logic: a request of 100 rows, then a new two-row request before every round
    # (arrivals that would fill half of each 4-row round by themselves). The big one takes part at least every other
    # round, however long the stream of small ones.
    from embedrt.serve.queue import ReadyRequests, Request

    def request(rows):
        r = Request(future=None, loop=None, prepare=lambda: [])
        r.rows, r.lengths = [[1] * 10] * rows, np.full(rows, 10)
        r.tokens = int(r.lengths.sum())
        return r

    ready, big = ReadyRequests(), request(100)
    ready.add(big)
    rounds_with_big = []
    for _ in range(20):  # the big one lasts ~30 rounds
        ready.add(request(2))
        parts, _, _ = ready.take(budget=40, most=None, batching=True, fair=True)
        rounds_with_big.append(any(r is big for r, _, _ in parts))
        assert sum(e - s for _, s, e in parts) <= 4
    assert all(a or b for a, b in zip(rounds_with_big, rounds_with_big[1:], strict=False))
    assert big.taken >= 20  # it moved on, round after round


def test_a_round_s_runs_stay_within_the_encoder_s_own_run_size():
    # The server's max_batch_tokens sizes a round; each run inside it also keeps to the
    # encoder's plan, which on the CPU is sized by the model (batching.cpu_run_tokens).
    from embedrt.batching import BatchPlan

    config = BatchingConfig(max_batch_tokens=16384, batch_size=64)
    assert config.plan(BatchPlan(max_tokens=512)).max_tokens == 512
    assert config.plan(BatchPlan(max_tokens=1 << 20)).max_tokens == 16384
    assert config.plan(BatchPlan(max_tokens=512)).max_rows == 64
