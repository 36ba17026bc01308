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
    bases = {id(r.base) for r in packed if r.base is not None}
    assert len(bases) <= 1  # views into one allocation, not an array per row


def test_packed_rows_refuse_ids_past_int32():
    with pytest.raises(OverflowError):
        pack_rows([[1, 2**31]])


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
    out: list[np.ndarray] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(200):
            buf = buffers.take(3)
            with lock:
                assert not any(np.shares_memory(buf, o) for o in out)
                out.append(buf)
            with lock:
                out.remove(buf)
            buffers.give(buf)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert buffers.made <= 4  # at most one per thread holding one at a time


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("dst", ["out.npy", "out.parquet"])
def test_many_shards_through_reused_buffers_write_every_row(tmp_path, tiny_encoder, depth, dst):
    # 23 shards of 13 rows, the last short: a buffer given back before its shard was written,
    # or filled while still queued, would put another shard's vectors in these rows.
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
