"""Dynamic batching on the tiny model, in-process: coalescing, splitting, dropping, bounds."""

import asyncio
import json

import numpy as np
import pytest

from embedrt import ConfigError, Encoder, OverloadedError
from embedrt.scheduler import BatchingConfig, Scheduler, SchedulerObserver, UnavailableError

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


def test_concurrent_jobs_coalesce_and_each_gets_its_own_rows(tiny_encoder):
    sched, rec = started(tiny_encoder, max_wait_ms=300)

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
    sched, rec = started(tiny_encoder, max_wait_ms=300)

    async def main():
        keep = sched.admit()
        gone = sched.admit()
        kept = sched.submit(keep, tiny_encoder.tokenize(["a dog"]))
        sched.submit(gone, tiny_encoder.tokenize(["the cat", "the man"]))
        sched.cancel(gone)  # its client disconnected while it waited
        return await kept

    got = asyncio.run(main())
    sched.close()
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


def test_a_failing_job_does_not_fail_its_batch_mates(tiny_copy):
    # The graph has 64 positions; a manifest claiming 100 lets an 82-token row reach it and fail
    # inside ONNX Runtime: a real, unexpected inference error.
    manifest = json.loads((tiny_copy / "embedrt.json").read_text())
    manifest["max_seq_length"] = 100
    (tiny_copy / "embedrt.json").write_text(json.dumps(manifest))
    enc = Encoder.load(tiny_copy, device="cpu")
    sched, _ = started(enc, max_wait_ms=300)

    async def main():
        return await asyncio.gather(embed(sched, enc, ["a dog"]), embed(sched, enc, ["dog " * 80]),
                                    return_exceptions=True)

    good, bad = asyncio.run(main())
    sched.close()
    np.testing.assert_allclose(good, enc.encode(["a dog"]), atol=1e-6)
    assert isinstance(bad, Exception) and "Add" in str(bad)


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


@pytest.mark.parametrize("field, value", [("max_batch_tokens", 0), ("max_queue", -1),
                                          ("batch_size", 1.5), ("max_wait_ms", -1)])
def test_config_is_validated(field, value):
    with pytest.raises(ConfigError, match=field):
        BatchingConfig(**{field: value})

