"""A shard's memory: packed token rows equal the tokenizer's, embedding buffers are reused and
never handed out twice at once, and a job of many shards still writes every row right."""

import threading

import numpy as np
import pytest
from fixtures.rows import make_rows, read_output, write
from hypothesis import given
from hypothesis import strategies as st

from embedrt.jobs import JobConfig, run_job
from embedrt.jobs.shard_memory import ShardBuffers, pack_rows
from embedrt.tokenizer import pad_rows


@given(st.lists(st.lists(st.integers(0, 2**31 - 1), max_size=40), max_size=60))
def test_packed_rows_hold_the_same_ids_in_one_array(rows):
    packed = pack_rows(rows)
    assert [r.tolist() for r in packed] == rows
    assert all(r.dtype == np.int32 for r in packed)
    if packed:  # views into one allocation, not an array per row
        assert packed[0].base is not None
        assert all(r.base is packed[0].base for r in packed)


@pytest.mark.parametrize("bad", [2**31, -1])
def test_packed_rows_refuse_ids_outside_int32(bad):
    with pytest.raises(ValueError, match="outside int32"):
        pack_rows([[1, 2], [3, bad]])


def test_packed_rows_pad_as_lists_do(tiny_encoder):
    rows = tiny_encoder.tokenize(["a short one", "a somewhat longer text than that", ""])
    width = max(map(len, rows))
    packed, plain = pad_rows(pack_rows(rows), width, 0), pad_rows(rows, width, 0)
    for got, want in zip(packed, plain, strict=True):
        assert got.dtype == want.dtype == np.int64
        np.testing.assert_array_equal(got, want)


def test_buffers_are_reused_once_given_back():
    buffers = ShardBuffers(dim=4)
    a = buffers.take(8)
    b = buffers.take(8)  # a is still out: a second buffer
    assert a.shape == b.shape == (8, 4) and a.dtype == np.float32
    assert not np.shares_memory(a, b) and buffers.made == 2
    buffers.give(a)
    c = buffers.take(5)  # the last shard is smaller: a view of a used buffer
    assert c.shape == (5, 4) and np.shares_memory(a, c) and buffers.made == 2
    buffers.give(c)
    d = buffers.take(8)  # the whole buffer again, not the 5-row view
    assert d.shape == (8, 4) and np.shares_memory(a, d)
    buffers.give(d)
    e = buffers.take(16)  # larger than any free one: a new buffer, never a short one
    assert e.shape == (16, 4) and buffers.made == 3


def test_buffers_never_block_and_never_hand_one_out_twice():
    buffers = ShardBuffers(dim=2)
    held: set[int] = set()  # ids of the base arrays out right now
    errors: list[str] = []
    lock = threading.Lock()
    together = threading.Barrier(4)  # every thread holds a buffer at the same moment

    def worker() -> None:
        for _ in range(50):
            buf = buffers.take(3)
            key = id(buf.base)
            with lock:
                if key in held:
                    errors.append("a buffer handed out while another thread held it")
                held.add(key)
            together.wait(timeout=10)
            with lock:
                held.discard(key)
            buffers.give(buf)
            together.wait(timeout=10)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert buffers.made == 4  # four held at once, then reused for the other 49 rounds


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("dst", ["out.npy", "out.parquet"])
def test_many_shards_through_reused_buffers_write_every_row(
    tmp_path, tiny_encoder, monkeypatch, depth, dst
):
    # 23 shards of 13 rows, the last short. A buffer given back is poisoned at once, so any
    # write of a shard after its buffer went back (or a fill while it is still queued) puts
    # NaNs or another shard's vectors in the output, whatever the timing.
    made: list[ShardBuffers] = []

    class Poisoned(ShardBuffers):
        def __init__(self, dim: int):
            super().__init__(dim)
            made.append(self)

        def give(self, view: np.ndarray) -> None:
            view.fill(np.nan)
            super().give(view)

    monkeypatch.setattr("embedrt.jobs.job.ShardBuffers", Poisoned)
    rows = make_rows(13 * 22 + 5)
    path = write(tmp_path / "in.jsonl", rows, "jsonl")
    run_job(
        path,
        tmp_path / dst,
        tiny_encoder,
        JobConfig(progress="none", shard_rows=13, queue_depth=depth),
    )
    emb, _, _ = read_output(tmp_path / dst)
    texts = [r["text"] for r in rows]
    want = np.concatenate(
        [tiny_encoder.encode(texts[i : i + 13]) for i in range(0, len(texts), 13)]
    )
    assert np.asarray(emb).tobytes() == want.tobytes()
    assert len(made) == 1 and 1 <= made[0].made <= depth + 2  # reused, not one per shard
