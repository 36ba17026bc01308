"""Activation memory on the CPU (issue 20): the process's CPU sessions share one arena and plan
no memory patterns, whatever the number of encoders; GPU sessions keep their own. The figures
this buys are in bench/results/memory_settings_*.md; here, that the settings are what runs and
that encoders sharing the arena still give their own vectors."""

import threading

import numpy as np

from embedrt import Encoder
from embedrt.session import SessionOptions, ort_session_options
from embedrt.tokenizer import HEAD_SLACK_TOKENS

TEXTS = [f"text {i} " + "word " * (i * 7 % 90) for i in range(120)]


def test_cpu_sessions_share_the_environment_arena_without_memory_patterns():
    so, extra = ort_session_options(SessionOptions(threads=1), "cpu")
    assert so.get_session_config_entry("session.use_env_allocators") == "1"
    assert so.enable_mem_pattern is False
    assert extra == {"disabled_optimizers": ["SkipLayerNormFusion"]}
    gpu, _ = ort_session_options(SessionOptions(threads=1), "cuda")
    assert gpu.enable_mem_pattern is True  # ONNX Runtime's default, left alone off the CPU


def test_encoders_sharing_the_arena_keep_their_own_vectors(tiny_artifact):
    """Two encoders (three sessions, one arena) running at once from two threads over mixed
    lengths give what each gives alone, row for row."""
    a = Encoder.load(tiny_artifact, threads=2, streams=2)
    b = Encoder.load(tiny_artifact, threads=1)
    alone_a = a.encode(TEXTS, batch_size=8)
    alone_b = b.encode(TEXTS[:60], batch_size=4)
    got: dict[str, list[np.ndarray]] = {"a": [], "b": []}

    def run(name, encoder, texts, batch):
        for _ in range(4):
            got[name].append(encoder.encode(texts, batch_size=batch))

    workers = [
        threading.Thread(target=run, args=("a", a, TEXTS, 8)),
        threading.Thread(target=run, args=("b", b, TEXTS[:60], 4)),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(got["a"]) == len(got["b"]) == 4
    for vecs in got["a"]:
        np.testing.assert_array_equal(vecs, alone_a)
    for vecs in got["b"]:
        np.testing.assert_array_equal(vecs, alone_b)


def test_the_load_check_run_gives_its_memory_back_and_later_runs_keep_theirs(
    tiny_artifact, monkeypatch
):
    # The load's check of one max_seq_length text runs with ONNX Runtime's arena shrinkage on
    # (its memory goes back); the encode runs after it do not shrink (the arena keeps serving).
    import onnxruntime

    from embedrt import session

    seen: list[str | None] = []
    real = onnxruntime.InferenceSession.run

    def run(self, outputs, feeds, options=None):
        key = "memory.enable_memory_arena_shrinkage"
        seen.append(options.get_run_config_entry(key) if options is not None else None)
        return real(self, outputs, feeds, options)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", run)
    enc = Encoder.load(tiny_artifact, device="cpu", streams=1)
    assert seen == ["cpu:0"]  # the probe
    enc.encode(TEXTS, batch_size=8)
    assert len(seen) > 2 and set(seen[1:]) == {None}
    assert session.Session.run.__kwdefaults__ == {"shrink": False}


def test_no_untruncated_copy_of_the_tokenizer_but_for_token_details(tiny_artifact):
    # An untruncated copy of the tokenizer (tokenizer.TextTokenizer._full) is 8 MB for
    # all-mpnet-base-v2's, kept for the process's life. Neither the load check nor a text cut
    # before tokenizing, nor counting a text's tokens untruncated, builds it; only the server's
    # token details (TEI's /tokenize) need one.
    enc = Encoder.load(tiny_artifact, device="cpu")
    enc.encode(["word " * 10_000, "a short one"])
    short, long = enc.count_tokens(["word " * 3, "word " * 10_000], truncate=False)
    assert short == enc.count_tokens("word " * 3)[0] < enc.manifest.max_seq_length
    assert long >= enc.manifest.max_seq_length + HEAD_SLACK_TOKENS
    assert enc._tokenizer._untruncated is None
    enc._tokenizer.encodings(["word"])
    assert enc._tokenizer._untruncated is not None


def test_the_load_check_runs_at_most_probe_max_tokens(tiny_artifact, monkeypatch):
    # A long-context model's full-length check would hold heads x length^2 floats of attention
    # per tensor at every load (3.2 GB at 8192 tokens for 12 heads): the check stops at
    # PROBE_MAX_TOKENS, cut as the tokenizer cuts.
    from embedrt import loading
    from embedrt.runner import Runner

    seen: list[list[int]] = []
    real = Runner.run

    def run(self, rows, *args, **kwargs):
        seen.extend(list(r) for r in rows)
        return real(self, rows, *args, **kwargs)

    monkeypatch.setattr(Runner, "run", run)
    Encoder.load(tiny_artifact, device="cpu")
    assert [len(r) for r in seen] == [32]  # the tiny model's whole max_seq_length
    monkeypatch.setattr(loading, "PROBE_MAX_TOKENS", 12)
    seen.clear()
    enc = Encoder.load(tiny_artifact, device="cpu")
    assert [len(r) for r in seen] == [12]
    assert seen[0][-1] == enc._tokenizer.tokenize(["x"])[0][-1]  # ends with [SEP], as cut rows do
