"""int8 graphs run BERT-style attention as ONNX's Attention operator (export/attention.py): the
rewrite where the pattern is, the same vectors, and the graph left alone where ONNX Runtime
would give anything else."""

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from embedrt import Encoder, load_manifest
from embedrt.export import attention, export_model
from embedrt.tokenizer import TextTokenizer, pad_rows

TEXTS = ["the man plays guitar", "a dog", "", "someone fell on monday " * 3, "the quick brown fox"]


def ops(path):
    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


@pytest.fixture(scope="module")
def int8_artifact(tmp_path_factory, st_mean):
    out = tmp_path_factory.mktemp("attention") / "artifact"
    export_model(st_mean, out, variants=("int8",))
    return out


def test_the_int8_graph_runs_one_attention_per_layer(int8_artifact, st_mean):
    import json

    layers = json.loads((st_mean / "config.json").read_text())["num_hidden_layers"]
    int8 = load_manifest(int8_artifact).variant("int8")
    assert int8.fused_ops["attention"] == layers
    graph = onnx.load(str(int8_artifact / "model_int8.onnx"), load_external_data=False)
    assert ops(int8_artifact / "model_int8.onnx").count("Attention") == layers
    assert "Softmax" not in ops(int8_artifact / "model_int8.onnx")
    assert {o.domain: o.version for o in graph.opset_import}[""] == attention.ATTENTION_OPSET
    # the plain fp32 graph keeps torch's own attention, at its own opset
    assert "Attention" not in ops(int8_artifact / "model.onnx")
    enc = Encoder.load(int8_artifact, device="cpu", precision="int8")
    one = np.stack([enc.encode(t) for t in TEXTS])
    np.testing.assert_allclose(enc.encode(TEXTS, batch_size=5), one, atol=1e-6)  # padded


@pytest.fixture
def plain(tmp_path, int8_artifact):
    """A copy of the export's fp32 graph (torch's attention, as int8 is quantized from), and
    padded feeds."""
    for name in ("model.onnx", "model.onnx_data"):
        shutil.copy(int8_artifact / name, tmp_path / name)
    tok = TextTokenizer.load(int8_artifact / "tokenizer.json", 32)
    rows = tok.tokenize(TEXTS)
    ids, mask = pad_rows(rows, max(map(len, rows)), 0)
    return tmp_path / "model.onnx", [{"input_ids": ids, "attention_mask": mask}]


def run(path, feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [sess.run(None, f) for f in feeds]


def test_the_rewrite_gives_the_same_outputs(plain):
    path, feeds = plain
    before = run(path, feeds)
    layers = ops(path).count("Softmax")
    assert attention.attention_ops(path, feeds) == {"attention": layers} and layers > 1
    assert ops(path).count("Attention") == layers
    for a, b in zip(before, run(path, feeds), strict=True):
        np.testing.assert_allclose(a[0], b[0], atol=1e-6)


def test_a_rewrite_that_changes_an_output_is_not_kept(plain, monkeypatch):
    path, feeds = plain
    real = attention.to_attention_ops

    def wrong_scale(model):
        count = real(model)
        for node in model.graph.node:
            for a in node.attribute:
                if node.op_type == "Attention" and a.name == "scale":
                    a.f *= 2
        return count

    monkeypatch.setattr(attention, "to_attention_ops", wrong_scale)
    data = path.read_bytes()
    assert attention.attention_ops(path, feeds) == {"attention": 0}
    assert path.read_bytes() == data
    assert not list(path.parent.glob(".attention-*"))


def test_a_graph_without_the_pattern_is_left_at_its_opset(plain):
    path, feeds = plain
    model = onnx.load(str(path))
    for node in model.graph.node:  # Softmax over another axis: not attention as torch writes it
        if node.op_type == "Softmax":
            node.attribute[0].i = 2
    assert attention.to_attention_ops(model) == 0
    assert {o.domain: o.version for o in model.opset_import}[""] == 17


def _merged_heads(model):
    """Each layer's Transpose that merges the heads after P.V, in layer order."""
    made = {o: n for n in model.graph.node for o in n.output}
    return [
        n
        for n in model.graph.node
        if n.op_type == "Transpose"
        and made.get(n.input[0]) is not None
        and made[n.input[0]].op_type == "MatMul"
        and made[n.input[0]].input[0]
        in {o for m in model.graph.node if m.op_type == "Softmax" for o in m.output}
    ]


def test_heads_read_elsewhere_keep_their_layers_nodes(plain):
    # a layer whose merged heads something else reads (here a graph output) keeps torch's nodes
    path, feeds = plain
    model = onnx.load(str(path))
    layers = [n.op_type for n in model.graph.node].count("Softmax")
    first = _merged_heads(model)[0]
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(first.output[0]))
    onnx.save(model, str(path))
    before = run(path, feeds)
    assert attention.attention_ops(path, feeds) == {"attention": layers - 1}
    for a, b in zip(before, run(path, feeds), strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x, y, atol=1e-6)


def test_a_bias_of_each_layers_own_is_left_alone(plain):
    # one Attention mask serves every layer: a term added to one layer's scores only (unlike
    # MPNet's position bias, which every layer shares) leaves the graph as it was
    path, _ = plain
    model = onnx.load(str(path))
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    model.graph.initializer.append(
        onnx.numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "layer0_bias")
    )
    add = onnx.helper.make_node("Add", [softmax.input[0], "layer0_bias"], ["layer0_biased"])
    softmax.input[0] = "layer0_biased"
    nodes = list(model.graph.node)
    nodes.insert(nodes.index(softmax), add)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    assert attention.to_attention_ops(model) == 0


def test_an_onnxruntime_without_the_kernel_loads_fp32_or_says_what_to_install(
    int8_artifact, monkeypatch
):
    # onnxruntime before 1.23 has no CPU kernel for ONNX's Attention: auto passes over the int8
    # graph (embedrt info says why), an explicit int8 names the version to install.
    from embedrt import variants
    from embedrt.errors import ModelLoadError

    m = load_manifest(int8_artifact)
    if m.variant("int8").quality.get("gate") == "passed":
        assert Encoder.load(int8_artifact, device="cpu").info.variant == "int8"
    monkeypatch.setattr(variants, "onnxruntime_version", lambda: (1, 22))
    assert Encoder.load(int8_artifact, device="cpu").info.variant == "fp32"
    assert "onnxruntime 1.22 lacks" in variants.auto_skipped(m)["int8"]
    with pytest.raises(ModelLoadError, match=r"pip install 'onnxruntime>=1.23'"):
        Encoder.load(int8_artifact, device="cpu", precision="int8")
    monkeypatch.setattr(variants, "onnxruntime_version", lambda: (1, 32))
    assert variants.runtime_lacks(m.variant("int8")) == ""
