"""Dynamic batching on the tiny model, in-process: coalescing, splitting, dropping, bounds."""

import asyncio
import json
import logging
import threading

import numpy as np
import pytest

from embedrt import ConfigError, EmbedrtError, Encoder, OverloadedError
from embedrt.errors import UnavailableError
from embedrt.scheduler import BatchingConfig, Scheduler, SchedulerObserver

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

    def batch(self, rows, tokens, padded, seconds):
        self.batches.append((rows, tokens, padded))

    def queue_wait(self, seconds):
        self.waits.append(seconds)

    def dropped(self):
        self.drops += 1


def started(encoder, **config):
    rec = Recorder()
    sched = Scheduler(encoder, BatchingConfig(**config), rec)
    sched.start()
    return sched, rec


async def embed(sched, encoder, texts):
    job = sched.admit()
    return await sched.submit(job, encoder.tokenize(texts))


class GatedEncoder:
    """The tiny encoder, but inference waits at a gate: a round provably in flight."""

    def __init__(self, encoder):
        self._encoder = encoder
        self.entered, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode_tokens(self, *args, **kw):
        self.entered.set()
        self.release.wait(60)
        return self._encoder.encode_tokens(*args, **kw)


def test_concurrent_jobs_coalesce_and_each_gets_its_own_rows(tiny_encoder):
    # The round starts when the five jobs fill the token budget (the wait is a minute), so it
    # holds all five however slowly a loaded machine runs the callers.
    budget = int(tiny_encoder.count_tokens(sum(TEXTS, [])).sum())
    sched, rec = started(tiny_encoder, max_wait_ms=60_000, max_batch_tokens=budget)

    async def main():
        return await asyncio.gather(*(embed(sched, tiny_encoder, t) for t in TEXTS))

    results = asyncio.run(main())
    sched.close()
    for texts, got in zip(TEXTS, results):
        np.testing.assert_allclose(got, tiny_encoder.encode(texts), atol=1e-6)
    total = sum(map(len, TEXTS))
    assert [b[0] for b in rec.batches] == [total]  # one round for all five callers
    assert rec.batches[0][1] == int(tiny_encoder.count_tokens(sum(TEXTS, [])).sum())
    assert rec.batches[0][2] >= rec.batches[0][1]  # padded area covers the real tokens
    assert len(rec.waits) == len(TEXTS) and sched.depth == 0


def test_a_job_over_the_token_budget_is_split_across_rounds(tiny_encoder):
    texts = [f"the man plays guitar {'dog ' * (i % 5)}" for i in range(12)]
    sched, rec = started(tiny_encoder, max_batch_tokens=30, max_wait_ms=0)
    got = asyncio.run(embed(sched, tiny_encoder, texts))
    sched.close()
    np.testing.assert_allclose(got, tiny_encoder.encode(texts), atol=1e-6)
    assert len(rec.batches) > 1 and sum(b[0] for b in rec.batches) == len(texts)
    assert all(tokens <= 30 for _, tokens, _ in rec.batches)


def test_a_cancelled_job_is_dropped_before_inference(tiny_encoder):
    sched, rec = started(tiny_encoder, max_wait_ms=60_000)

    async def main():
        keep = sched.admit()
        gone = sched.admit()
        kept = sched.submit(keep, tiny_encoder.tokenize(["a dog"]))
        sched.submit(gone, tiny_encoder.tokenize(["the cat", "the man"]))
        sched.cancel(gone)  # its client disconnected while it waited
        await asyncio.to_thread(sched.close)  # ends the round's wait: both jobs are in it
        return await kept

    got = asyncio.run(main())
    np.testing.assert_allclose(got, tiny_encoder.encode(["a dog"]), atol=1e-6)
    assert rec.drops == 1 and [b[0] for b in rec.batches] == [1] and sched.depth == 0


def test_the_queue_is_bounded_and_frees_its_places(tiny_encoder):
    sched, rec = started(tiny_encoder, max_queue=2, max_wait_ms=0)

    async def main():
        a, b = sched.admit(), sched.admit()
        with pytest.raises(OverloadedError, match="queue is full"):
            sched.admit()
        sched.cancel(b, client_gone=False)  # refused while tokenizing: released, not a drop
        c = sched.admit()
        assert sched.depth == 2 and rec.drops == 0
        sched.cancel(c)  # its client left while it was tokenizing
        assert sched.depth == 1 and rec.drops == 1
        c = sched.admit()
        await asyncio.gather(sched.submit(a, [[2, 5, 3]]), sched.submit(c, [[2, 3]]))
        assert sched.depth == 0
        sched.admit()

    asyncio.run(main())
    sched.close()


def test_without_batching_each_job_runs_alone(tiny_encoder):
    sched, rec = started(tiny_encoder, batching=False)

    async def main():
        return await asyncio.gather(*(embed(sched, tiny_encoder, t) for t in TEXTS))

    results = asyncio.run(main())
    sched.close()
    for texts, got in zip(TEXTS, results):
        np.testing.assert_allclose(got, tiny_encoder.encode(texts), atol=1e-6)
    assert sorted(b[0] for b in rec.batches) == sorted(map(len, TEXTS))


def test_a_failing_job_does_not_fail_its_batch_mates(tiny_copy, caplog):
    # The graph has 64 positions; a manifest claiming 100 lets an 82-token row reach it and fail
    # inside ONNX Runtime: a real, unexpected inference error.
    manifest = json.loads((tiny_copy / "embedrt.json").read_text())
    manifest["max_seq_length"] = 100
    (tiny_copy / "embedrt.json").write_text(json.dumps(manifest))
    enc = Encoder.load(tiny_copy, device="cpu")
    sched, _ = started(enc, max_wait_ms=60_000)

    async def main():
        futures = [sched.submit(sched.admit(), enc.tokenize(t)) for t in (["a dog"], ["dog " * 80])]
        await asyncio.to_thread(sched.close)  # ends the round's wait: both jobs are in it
        return await asyncio.gather(*futures, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="embedrt.scheduler"):
        good, bad = asyncio.run(main())
    np.testing.assert_allclose(good, enc.encode(["a dog"]), atol=1e-6)
    # ONNX Runtime's own exception reaches the caller (the server logs it and answers 500)
    assert isinstance(bad, Exception) and not isinstance(bad, EmbedrtError)
    assert "a batch of 2 jobs failed; retrying each job alone" in caplog.text
    assert sched.depth == 0


def test_close_answers_everything_queued_then_refuses(tiny_encoder):
    sched, rec = started(tiny_encoder, max_wait_ms=60_000)

    async def main():
        futures = [sched.submit(sched.admit(), tiny_encoder.tokenize(t)) for t in TEXTS]
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, sched.close)
        results = await asyncio.gather(*futures)
        with pytest.raises(UnavailableError):
            sched.admit()
        return results

    results = asyncio.run(main())
    assert [len(r) for r in results] == [len(t) for t in TEXTS]
    assert sum(b[0] for b in rec.batches) == sum(map(len, TEXTS))


def test_a_job_submitted_after_close_fails_instead_of_waiting_forever(tiny_encoder):
    sched, _ = started(tiny_encoder)

    async def main():
        job = sched.admit()  # admitted, then tokenizing while the server shuts down
        await asyncio.to_thread(sched.close)
        with pytest.raises(UnavailableError, match="worker stopped"):
            await asyncio.wait_for(sched.submit(job, tiny_encoder.tokenize(["a dog"])), 10)
        assert sched.depth == 0
        sched.cancel(job)  # the caller's cleanup after the failure releases nothing twice
        assert sched.depth == 0

    asyncio.run(main())


def test_close_fails_the_jobs_still_queued_when_its_timeout_ends(tiny_encoder):
    gated = GatedEncoder(tiny_encoder)
    sched, _ = started(gated, max_wait_ms=0)

    async def main():
        running = sched.submit(sched.admit(), tiny_encoder.tokenize(["a dog"]))
        assert await asyncio.to_thread(gated.entered.wait, 30)  # its round is in inference
        queued = sched.submit(sched.admit(), tiny_encoder.tokenize(["the cat"]))
        try:
            await asyncio.to_thread(sched.close, 0.1)  # the worker is stuck: the timeout ends
            with pytest.raises(UnavailableError, match="shut down before"):
                await asyncio.wait_for(queued, 10)
            assert sched.depth == 0
        finally:
            gated.release.set()
        return await asyncio.wait_for(running, 30)  # the round in flight still completes

    np.testing.assert_allclose(asyncio.run(main()), tiny_encoder.encode(["a dog"]), atol=1e-6)


def test_each_job_is_answered_on_its_own_event_loop(tiny_encoder, caplog):
    # Two callers on two loops (threads) share one round. In debug mode a future settled from
    # another loop's thread raises there ("Non-thread-safe operation"), logged by asyncio, and
    # its waiter is only woken by its timeout.
    a, b = tiny_encoder.tokenize(["a dog"]), tiny_encoder.tokenize(["the man plays guitar"])
    sched, rec = started(tiny_encoder, max_wait_ms=60_000, max_batch_tokens=sum(map(len, a + b)))

    def other_loop():
        async def main():
            return await asyncio.wait_for(sched.submit(sched.admit(), b), 10)
        return asyncio.run(main(), debug=True)

    async def main():
        mine = sched.submit(sched.admit(), a)
        theirs = await asyncio.to_thread(other_loop)
        return await asyncio.wait_for(mine, 10), theirs

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        got_a, got_b = asyncio.run(main(), debug=True)
    sched.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    np.testing.assert_allclose(got_a, tiny_encoder.encode(["a dog"]), atol=1e-6)
    np.testing.assert_allclose(got_b, tiny_encoder.encode(["the man plays guitar"]), atol=1e-6)
    assert [r[0] for r in rec.batches] == [2]  # one round held both


@pytest.mark.parametrize("field, value", [("max_batch_tokens", 0), ("max_queue", -1),
                                          ("batch_size", 1.5), ("max_wait_ms", -1)])
def test_config_is_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        BatchingConfig(**{field: value})

