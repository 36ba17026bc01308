"""Token tables in a data file beside the graph (format 2): read verified, used in place.

The tiny artifact keeps its word table in model.onnx_data, as `embedrt export` writes it; the
same graph holding the table itself (format 1, artifacts exported before) must give the same
floats.
"""

import json
import os

import numpy as np
import pytest
from fixtures.tiny_model import build_artifact

from embedrt import Encoder, EncodeStats, ModelLoadError, load_manifest
from embedrt.manifest import sha256_file

TEXTS = ["a man plays the guitar", "the dog", "someone cooks food in the kitchen", ""]


def _edit(path, fn):
    data = json.loads((path / "embedrt.json").read_text())
    fn(data["variants"][0])
    (path / "embedrt.json").write_text(json.dumps(data))


def test_tables_artifact_equals_the_same_graph_holding_its_table(tiny_artifact, tmp_path):
    inline = build_artifact(tmp_path / "inline", tables=False)
    assert sorted(os.listdir(inline)) == ["embedrt.json", "model.onnx", "tokenizer.json"]
    assert json.loads((inline / "embedrt.json").read_text())["format"] == 1
    variant = load_manifest(tiny_artifact).variant("fp32")
    assert variant.data is not None and variant.data.file == "model.onnx_data"
    assert [(t.name, t.dtype, t.offset) for t in variant.tables] == [("word", "float32", 0)]
    assert variant.files == ("model.onnx", "model.onnx_data")
    assert (tiny_artifact / "model.onnx").stat().st_size < (inline / "model.onnx").stat().st_size
    for streams in (1, 2):
        got = Encoder.load(tiny_artifact, device="cpu", streams=streams).encode(TEXTS * 20)
        want = Encoder.load(inline, device="cpu", streams=streams).encode(TEXTS * 20)
        np.testing.assert_array_equal(got, want)


def test_plain_onnx_runtime_loads_the_graph_by_path(tiny_artifact, tiny_encoder):
    # What text-embeddings-inference and a user's own ONNX Runtime code do: open model.onnx by
    # path, which reads the table from model.onnx_data by its name.
    import onnxruntime

    tok = tiny_encoder.tokenizer
    rows = tok.tokenize(TEXTS[:3])
    sess = onnxruntime.InferenceSession(str(tiny_artifact / "model.onnx"))
    for text, row in zip(TEXTS, rows, strict=False):
        ids = np.array([row], np.int64)
        out = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
        np.testing.assert_allclose(out, tiny_encoder.encode(text), atol=1e-6)


def test_onnx_runtime_never_reads_the_data_file_itself(tiny_copy, tiny_encoder, monkeypatch):
    # The runtime hands ONNX Runtime the table it hashed: garbage written over the data file
    # after the check, just before ONNX Runtime makes a session (the encoder's, then the
    # streams' one at the first encode), changes nothing.
    import onnxruntime

    real = onnxruntime.InferenceSession
    data = tiny_copy / "model.onnx_data"

    def scribble(path, *args, **kwargs):
        data.write_bytes(np.random.default_rng(0).bytes(data.stat().st_size))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", scribble)
    enc = Encoder.load(tiny_copy, device="cpu", streams=2)
    np.testing.assert_array_equal(enc.encode(TEXTS * 20), tiny_encoder.encode(TEXTS * 20))


def test_a_corrupted_or_missing_data_file_names_the_file(tiny_copy):
    data = tiny_copy / "model.onnx_data"
    good = data.read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x01
    data.write_bytes(bytes(bad))
    with pytest.raises(ModelLoadError, match="'model.onnx_data' is corrupted"):
        Encoder.load(tiny_copy, device="cpu")
    data.unlink()
    with pytest.raises(ModelLoadError, match="'model.onnx_data' is missing"):
        Encoder.load(tiny_copy, device="cpu")
    os.mkfifo(data)  # must not hang
    with pytest.raises(ModelLoadError, match="'model.onnx_data' is not a regular file"):
        Encoder.load(tiny_copy, device="cpu")


def test_a_data_file_shorter_than_its_tables_is_refused_before_reading(tiny_copy):
    # Hash and manifest agree (a truncated copy re-hashed by hand): the table no longer fits.
    data = tiny_copy / "model.onnx_data"
    data.write_bytes(data.read_bytes()[:-4])
    _edit(tiny_copy, lambda v: v["data"].update(sha256=sha256_file(data)))
    with pytest.raises(ModelLoadError, match="holds 7356 bytes where its tables end at 7360"):
        Encoder.load(tiny_copy, device="cpu")
    # nor one longer (refused before any of it is read: a manifest pointing at a big file)
    data.write_bytes(data.read_bytes() + b"\0" * 8)
    _edit(tiny_copy, lambda v: v["data"].update(sha256=sha256_file(data)))
    with pytest.raises(ModelLoadError, match="holds 7364 bytes where its tables end at 7360"):
        Encoder.load(tiny_copy, device="cpu")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda v: v.pop("data"), "data and tables come together"),
        (lambda v: [v.pop("data"), v.pop("tables")], "data file the manifest does not list"),
        (lambda v: v.update(tables=[]), "data and tables come together"),
        (lambda v: v["tables"][0].update(dtype="float64"), "table dtype 'float64' not in"),
        (lambda v: v["tables"][0].update(shape=[]), "a list of 1 to 8 sizes"),
        (lambda v: v["tables"][0].update(shape=[115, 0]), "shape must be an integer from 1"),
        (lambda v: v["tables"][0].update(offset=2), "misaligned"),
        (lambda v: v["tables"][0].update(offset=-4096), "offset must be an integer from 0"),
        (lambda v: v["tables"].append(dict(v["tables"][0])), "a table is named twice"),
        (lambda v: v["data"].update(file="../model.onnx_data"), "leaves the artifact directory"),
        # ONNX Runtime itself takes each of these without a word:
        (lambda v: v["tables"][0].update(name="nope"), "the manifest does not match the graph"),
        (lambda v: v["tables"][0].update(shape=[16, 115]), "the manifest does not match"),
        (lambda v: v["tables"][0].update(shape=[5, 23, 16]), "the manifest does not match"),
        (lambda v: v["tables"][0].update(dtype="float16"), "the manifest does not match"),
        (lambda v: v["tables"][0].update(offset=4), "the manifest does not match"),
    ],
)
def test_a_tampered_table_record_fails_at_load(tiny_copy, edit, message):
    _edit(tiny_copy, edit)
    with pytest.raises(ModelLoadError, match=message):
        Encoder.load(tiny_copy, device="cpu")


def test_a_format_1_embedrt_refuses_a_format_2_artifact_by_its_number(tiny_copy):
    # Format 2 is what an older embedrt (reads 1) refuses by name instead of handing ONNX
    # Runtime a graph without its table; this embedrt reads both.
    assert json.loads((tiny_copy / "embedrt.json").read_text())["format"] == 2
    doc = json.loads((tiny_copy / "embedrt.json").read_text())
    doc["format"] = 3
    (tiny_copy / "embedrt.json").write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match=r"format 3 is not supported .*\[1, 2\]"):
        Encoder.load(tiny_copy, device="cpu")


def test_the_gpu_hand_over_copies_the_tables_into_the_graph(tiny_artifact, tiny_encoder):
    # On CUDA and TensorRT the tables go in before the graph is partitioned
    # (add_external_initializers), copied; the same call, run here with the CPU provider, loads
    # the verified file by descriptor and computes the same vectors.
    import onnxruntime

    from embedrt.session import _supply_tables
    from embedrt.verified import verified_file, verified_tables

    variant = load_manifest(tiny_artifact).variant("fp32")
    so = onnxruntime.SessionOptions()
    tables = verified_tables(tiny_artifact, variant)
    tables = {name: array.copy() for name, array in tables.items()}  # writable, to scribble on
    kept = _supply_tables(onnxruntime, so, tables, "", "cuda")
    with verified_file(tiny_artifact, variant) as path:
        sess = onnxruntime.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    for array in tables.values():  # copied into the graph: the session no longer reads these,
        array[...] = 0.0  # so Session keeps no host copy on a GPU
    del kept
    ids = np.array(tiny_encoder.tokenizer.tokenize(TEXTS[:1]), np.int64)
    out = sess.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0]
    np.testing.assert_allclose(out, tiny_encoder.encode(TEXTS[0]), atol=1e-6)


def test_the_manifest_s_activation_width_sizes_the_cpu_runs(tiny_copy, tiny_encoder):
    # The export records the graph's widest matrix product; the CPU plan keeps a run's tokens
    # to what holds that activation to batching.CPU_ACTIVATION_FLOATS. Same vectors either way.
    from embedrt.batching import CPU_ACTIVATION_FLOATS

    assert load_manifest(tiny_copy).activation_width is None  # the fixture does not say
    assert tiny_encoder.runner.plan.max_tokens == 16384
    doc = json.loads((tiny_copy / "embedrt.json").read_text())
    doc["activation_width"] = CPU_ACTIVATION_FLOATS // 300  # 300 tokens a run
    (tiny_copy / "embedrt.json").write_text(json.dumps(doc))
    enc = Encoder.load(tiny_copy, device="cpu", streams=1)
    assert enc.runner.plan.max_tokens == 300
    texts = [" ".join(["the quick brown fox jumps over the lazy dog"] * 3)] * 40
    stats = EncodeStats()
    got = enc.encode(texts, stats=stats)
    np.testing.assert_allclose(got, tiny_encoder.encode(texts), atol=1e-6)
    per_run = 300 // int(max(enc.count_tokens(texts)))  # rows a 300-token run holds
    assert per_run < 32 and stats.batches == -(-40 // per_run)
    doc["activation_width"] = 0
    (tiny_copy / "embedrt.json").write_text(json.dumps(doc))
    with pytest.raises(ModelLoadError, match="activation_width must be an integer from 1"):
        Encoder.load(tiny_copy, device="cpu")
