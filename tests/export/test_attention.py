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


def _hand_built(layers=1, mask_by_mul=False, extra_output=None, shape_reader=None):
    """A graph of `layers` attention layers as torch writes them (width 8, 2 heads of 4), from
    inputs x [B, L, 8] and m [B, 1, 1, L]; the padding mask is m itself, or Mul(m, -1e4) as
    older BERTs make it (read once in a one-layer graph). extra_output: a tensor of layer 0
    also made a graph output ("softmax" or "merged"); shape_reader: what reads the merged
    heads besides their Reshape ("shape", a Shape that only feeds a graph output; "gather", a
    Gather of the data)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array([0, 0, 2, 4], np.int64), "heads"),
        numpy_helper.from_array(np.array([0, 0, 8], np.int64), "width"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array(-1e4, np.float32), "big"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
    ]
    nodes, outputs, x = [], [], "x"
    mask = "m"
    if mask_by_mul:
        nodes.append(helper.make_node("Mul", ["m", "big"], ["mask"]))
        mask = "mask"
    for i in range(layers):
        p = f"l{i}_"
        heads = {}
        for name, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
            w = rng.standard_normal((8, 8)).astype(np.float32)
            inits.append(numpy_helper.from_array(w, f"{p}w{name}"))
            nodes += [
                helper.make_node("MatMul", [x, f"{p}w{name}"], [f"{p}{name}"]),
                helper.make_node("Reshape", [f"{p}{name}", "heads"], [f"{p}{name}4"]),
                helper.make_node("Transpose", [f"{p}{name}4"], [f"{p}{name}h"], perm=perm),
            ]
            heads[name] = f"{p}{name}h"
        nodes += [
            helper.make_node("MatMul", [heads["q"], heads["k"]], [f"{p}qk"]),
            helper.make_node("Mul", [f"{p}qk", "half"], [f"{p}scaled"]),
            helper.make_node("Add", [f"{p}scaled", mask], [f"{p}masked"]),
            helper.make_node("Softmax", [f"{p}masked"], [f"{p}softmax"], axis=-1),
            helper.make_node("MatMul", [f"{p}softmax", heads["v"]], [f"{p}pv"]),
            helper.make_node("Transpose", [f"{p}pv"], [f"{p}merged"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{p}merged", "width"], [f"{p}out"]),
        ]
        x = f"{p}out"
    if extra_output:
        outputs.append(helper.make_empty_tensor_value_info(f"l0_{extra_output}"))
    if shape_reader == "shape":
        nodes.append(helper.make_node("Shape", ["l0_merged"], ["l0_merged_shape"]))
        outputs.append(helper.make_empty_tensor_value_info("l0_merged_shape"))
    elif shape_reader == "gather":
        nodes.append(helper.make_node("Gather", ["l0_merged", "zero"], ["l0_first"], axis=3))
        outputs.append(helper.make_empty_tensor_value_info("l0_first"))
    graph = helper.make_graph(
        nodes,
        "attention",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "L", 8]),
            helper.make_tensor_value_info("m", TensorProto.FLOAT, ["B", 1, 1, "L"]),
        ],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["B", "L", 8]), *outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _outputs(model, mask_by_mul=False):
    """The graph's outputs for two rows of 5 tokens, the second's last two padding."""
    x = np.random.default_rng(1).standard_normal((2, 5, 8)).astype(np.float32)
    pads = np.zeros((2, 1, 1, 5), np.float32)
    pads[1, ..., 3:] = 1.0
    m = pads if mask_by_mul else -1e4 * pads  # the graph's Mul makes it additive, or m is
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x, "m": m})


def test_a_one_layer_graph_whose_mask_is_a_product_is_rewritten():
    # the scores are the product scaled by a constant; the mask, a product read once, is a term
    model = _hand_built(layers=1, mask_by_mul=True)
    before = _outputs(model, mask_by_mul=True)
    assert attention.to_attention_ops(model) == 1
    np.testing.assert_allclose(_outputs(model, mask_by_mul=True)[0], before[0], atol=1e-5)


@pytest.mark.parametrize(
    "kind", [{"extra_output": "softmax"}, {"extra_output": "scaled"}, {"shape_reader": "gather"}]
)
def test_a_layer_whose_steps_something_else_reads_keeps_its_nodes(kind):
    model = _hand_built(layers=2, **kind)
    before = _outputs(model)
    assert attention.to_attention_ops(model) == 1  # the second layer only
    for a, b in zip(before, _outputs(model), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_shapes_that_only_size_the_merge_go_with_it_and_others_keep_the_layer():
    # MPNet reads the merged heads' shape for its Reshape; a Shape read by anything else stays
    model = _hand_built(layers=2, shape_reader="shape")
    before = _outputs(model)
    assert attention.to_attention_ops(model) == 1
    for a, b in zip(before, _outputs(model), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
