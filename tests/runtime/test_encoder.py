"""Encoder properties on the tiny offline model (no torch)."""

import os
import threading

import numpy as np
import pytest

from embedrt import ConfigError, Encoder, InputError, ProviderError

TEXTS = [
    "the man plays guitar",
    "a woman cooks food in the kitchen",
    "the quick brown fox jumps over the lazy dog",
    "someone is playing an instrument",
    "market fell sharply on monday",
    "a",
    "dog",
    "the cat is on the lazy dog and the man is playing music in the kitchen",
]


def test_shapes_and_unit_norm(tiny_encoder):
    vecs = tiny_encoder.encode(TEXTS)
    assert vecs.shape == (len(TEXTS), 16) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    one = tiny_encoder.encode("the man plays guitar")
    assert one.shape == (16,)
    np.testing.assert_allclose(one, vecs[0], atol=1e-6)


def test_empty_list_gives_zero_rows(tiny_encoder):
    out = tiny_encoder.encode([])
    assert out.shape == (0, 16) and out.dtype == np.float32


def test_batched_equals_one_by_one(tiny_encoder):
    batched = tiny_encoder.encode(TEXTS, batch_size=64)
    single = np.stack([tiny_encoder.encode(t) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-6)
    assert not np.allclose(batched[0], batched[1], atol=1e-3)  # texts do differ


@pytest.mark.parametrize("batch_size", [1, 2, 3, 64])
def test_order_restored_after_length_sort(tiny_encoder, batch_size):
    ref = tiny_encoder.encode(TEXTS, batch_size=1)
    perm = np.random.default_rng(1).permutation(len(TEXTS))
    out = tiny_encoder.encode([TEXTS[i] for i in perm], batch_size=batch_size)
    np.testing.assert_allclose(out, ref[perm], atol=1e-6)


def test_padding_does_not_change_a_row(tiny_encoder):
    short = "a dog"
    alone = tiny_encoder.encode(short)
    long_text = " ".join(["the man plays guitar"] * 6)  # forces ~20 pad tokens on the short row
    together = tiny_encoder.encode([long_text, short], batch_size=8)
    np.testing.assert_allclose(together[1], alone, atol=1e-6)


def test_truncation_at_max_seq_length(tiny_encoder):
    words = ["dog"] * 100
    assert tiny_encoder.count_tokens(" ".join(words))[0] == 32
    full = tiny_encoder.encode(" ".join(words[:30]))  # 30 words + [CLS] + [SEP] = 32 tokens
    longer = tiny_encoder.encode(" ".join(["dog"] * 30 + ["cat"] * 70))
    np.testing.assert_allclose(longer, full, atol=1e-6)


def test_megabyte_string_is_truncated_not_rejected(tiny_encoder):
    huge = "the quick brown fox " * 52_429  # ~1 MB
    assert len(huge) > 1_000_000
    vec = tiny_encoder.encode(huge)
    np.testing.assert_allclose(vec, tiny_encoder.encode(huge[:200]), atol=1e-6)


def test_empty_and_whitespace_strings_work(tiny_encoder):
    vecs = tiny_encoder.encode(["", "   ", "\n"])
    assert np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    assert tiny_encoder.count_tokens("").tolist() == [2]  # [CLS] [SEP], as sentence-transformers


def test_deterministic(tiny_encoder):
    assert np.array_equal(tiny_encoder.encode(TEXTS), tiny_encoder.encode(TEXTS))


def test_concurrent_callers_get_their_own_results(tiny_encoder):
    ref = tiny_encoder.encode(TEXTS, batch_size=1)
    results, errors = {}, []

    def work(k):
        try:
            order = np.random.default_rng(k).permutation(len(TEXTS))
            results[k] = (order, tiny_encoder.encode([TEXTS[i] for i in order], batch_size=3))
        except Exception as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8
    for order, out in results.values():
        np.testing.assert_allclose(out, ref[order], atol=1e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        (["ok", 3], r"texts\[1\] is int, expected str"),
        (["ok", "fine", None], r"texts\[2\] is NoneType"),
        ([b"bytes"], r"texts\[0\] is bytes"),
        (b"raw bytes", "decode it first"),
        (None, "got NoneType"),
        (42, "got int"),
        ({"text": "a"}, "got dict"),
        (["ok", "bad \ud800"], r"texts\[1\] holds a lone surrogate"),
    ],
)
def test_wrong_types_raise_input_error(tiny_encoder, bad, match):
    with pytest.raises(InputError, match=match):
        tiny_encoder.encode(bad)


def test_tuples_and_generators_accepted(tiny_encoder):
    ref = tiny_encoder.encode(TEXTS[:3])
    np.testing.assert_allclose(tiny_encoder.encode(tuple(TEXTS[:3])), ref, atol=1e-6)
    np.testing.assert_allclose(tiny_encoder.encode(t for t in TEXTS[:3]), ref, atol=1e-6)


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_unavailable_gpu_device_raises_provider_error(tiny_artifact, device):
    with pytest.raises(ProviderError, match="available providers: .*CPUExecutionProvider"):
        Encoder.load(tiny_artifact, device=device)


def test_missing_precision_variant_is_config_error(tiny_artifact):
    with pytest.raises(ConfigError, match="no int8 variant.*it has: fp32"):
        Encoder.load(tiny_artifact, device="cpu", precision="int8")
    with pytest.raises(ConfigError, match="precision 'fp64'"):
        Encoder.load(tiny_artifact, device="cpu", precision="fp64")


def test_bad_batch_options(tiny_encoder, tiny_artifact):
    with pytest.raises(ConfigError, match="batch_size must be an integer from 1 to 65,536, got 0"):
        tiny_encoder.encode(TEXTS, batch_size=0)
    with pytest.raises(
        ConfigError, match="batch_tokens must be an integer from 1 to 1,048,576, got 0"
    ):
        Encoder.load(tiny_artifact, device="cpu", batch_tokens=0)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        (
            "threads",
            10_000,
            r"threads must be an integer from 1 to \d+ or None, got 10000: this process may use",
        ),
        ("threads", 0, "threads must be an integer from 1"),
        ("threads", -1, "threads must be an integer from 1"),
        ("threads", 1.5, "threads must be an integer"),
        ("threads", "2", "threads must be an integer"),
        ("threads", True, "threads must be an integer"),
        ("streams", 0, "streams must be an integer from 1"),
        ("streams", 10_000, "streams must be an integer from 1 to"),
        ("batch_tokens", 1 << 30, "batch_tokens must be an integer from 1 to 1,048,576"),
        ("batch_tokens", 2.0, "batch_tokens must be an integer"),
        ("spinning", "sometimes", "spinning .sometimes. is not one of off, run, on"),
        ("spinning", 1, "spinning 1 is not one of off, run, on"),
        ("variant", 3, "variant must be a variant's name"),
    ],
)
def test_every_knob_out_of_range_is_a_config_error_naming_the_range(
    tiny_artifact, option, value, message
):
    # Refused before anything is loaded: 10,000 ONNX Runtime threads would stall the machine.
    with pytest.raises(ConfigError, match=message):
        Encoder.load(tiny_artifact, device="cpu", **{option: value})


def test_threads_up_to_the_cpus_of_this_process_are_taken(tiny_artifact):
    cpus = len(os.sched_getaffinity(0))
    assert Encoder.load(tiny_artifact, device="cpu", threads=cpus).info.active_providers
    with pytest.raises(ConfigError, match=f"from 1 to {cpus} or None, got {cpus + 1}"):
        Encoder.load(tiny_artifact, device="cpu", threads=cpus + 1)


def test_batch_size_out_of_range_is_refused_by_encode(tiny_encoder):
    for bad in (0, -3, 1 << 20, 2.5, "8", None):
        with pytest.raises(ConfigError, match="batch_size must be an integer from 1 to 65,536"):
            tiny_encoder.encode(TEXTS, batch_size=bad)


def test_threads_and_small_token_budget(tiny_artifact, tiny_encoder):
    enc = Encoder.load(tiny_artifact, device="cpu", threads=1, spinning=False, batch_tokens=16)
    np.testing.assert_allclose(enc.encode(TEXTS), tiny_encoder.encode(TEXTS), atol=1e-6)
    assert enc.info.active_providers[0] == "CPUExecutionProvider"


def test_similarity(tiny_encoder):
    a = tiny_encoder.encode(TEXTS[:3])
    sim = tiny_encoder.similarity(a, a)
    assert sim.shape == (3, 3)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-6)
    np.testing.assert_allclose(sim, sim.T, atol=1e-6)
    assert tiny_encoder.similarity(a[0], a).shape == (1, 3)
    np.testing.assert_allclose(tiny_encoder.similarity(2 * a, a), sim, atol=1e-6)  # cosine, not dot


def test_tokenize_then_encode_tokens_equals_encode(tiny_encoder):
    rows = tiny_encoder.tokenize(TEXTS)
    assert [len(r) for r in rows] == tiny_encoder.count_tokens(TEXTS).tolist()
    assert rows[0][0] != rows[0][1]  # real ids, [CLS] first
    np.testing.assert_array_equal(tiny_encoder.encode_tokens(rows), tiny_encoder.encode(TEXTS))
    with pytest.raises(InputError, match=r"texts\[0\] is int"):
        tiny_encoder.tokenize([1])


def test_runner_run_is_one_padded_run_of_exactly_its_rows(tiny_encoder):
    from embedrt import EncodeStats

    rows = tiny_encoder.tokenize(TEXTS)
    stats = EncodeStats()
    got = tiny_encoder.runner.run(rows, stats)
    np.testing.assert_allclose(
        got, tiny_encoder.encode(TEXTS), atol=1e-6
    )  # padding changes nothing
    longest = max(map(len, rows))
    assert (stats.rows, stats.batches, stats.padded_tokens) == (len(rows), 1, len(rows) * longest)
    assert stats.tokens == sum(map(len, rows))
    assert tiny_encoder.runner.run([]).shape == (0, tiny_encoder.dim)


def test_stats_report_padding_efficiency(tiny_encoder):
    from embedrt import EncodeStats

    stats = EncodeStats()
    texts = ["a dog"] * 4 + ["a dog dog"]  # padding 4 rows by one token is cheaper than a run
    tiny_encoder.encode(texts, batch_size=64, stats=stats)
    lengths = tiny_encoder.count_tokens(texts)
    assert (stats.rows, stats.batches, stats.tokens) == (5, 1, int(lengths.sum()))
    assert stats.padded_tokens == 5 * int(lengths.max())
    assert stats.padding_efficiency == pytest.approx(lengths.sum() / (5 * lengths.max()))
    tiny_encoder.encode(texts, batch_size=1, stats=stats)  # accumulates; no padding at batch 1
    assert stats.rows == 10 and stats.batches == 6
    assert stats.padded_tokens == 5 * int(lengths.max()) + int(lengths.sum())


def test_count_tokens_without_truncation(tiny_encoder):
    long_text = " ".join(["dog"] * 90)  # 359 characters: tokenized whole, counted exactly
    assert tiny_encoder.count_tokens([long_text, "a dog"]).tolist() == [32, 4]
    assert tiny_encoder.count_tokens([long_text, "a dog"], truncate=False).tolist() == [92, 4]
    # the shared tokenizer still truncates
    assert tiny_encoder.count_tokens(long_text).tolist() == [32]
    # Many times max_seq_length: counted from a head, at least max_seq_length + 16.
    (count,) = tiny_encoder.count_tokens(" ".join(["dog"] * 10_000), truncate=False)
    assert 32 + 16 <= count < 10_002
