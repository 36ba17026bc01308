"""bench/kernel_floor.py: the floor graphs hold exactly the model's linear products and one
attention a layer, run as paired latency candidates beside embedrt, and refuse a model whose
products are not whole layers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("torch")  # the int8 artifact is exported here

from fixtures.st_zoo import TORCH_ONNX_WARNINGS, build_family  # noqa: E402

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from kernel_floor import attention_attrs, floor_model, layer_shapes, linear_shapes  # noqa: E402

pytestmark = [pytest.mark.filterwarnings(line) for line in TORCH_ONNX_WARNINGS]


@pytest.fixture(scope="module")
def bert_int8(tmp_path_factory):
    from embedrt.export import export_model

    root = tmp_path_factory.mktemp("floor")
    export_model(build_family(root / "st", "bert"), root / "artifact", variants=("int8",))
    return root / "artifact"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_floor_holds_the_models_products_and_attention(bert_int8, tmp_path, precision):
    model = linear_shapes(bert_int8 / "model.onnx")
    layers, hidden, inner = layer_shapes(model)
    assert (layers, hidden) == (2, 32) and len(model) == 12
    heads = attention_attrs(bert_int8 / "model_int8.onnx")
    assert heads["q_num_heads"] == 2
    path = tmp_path / "floor.onnx"
    path.write_bytes(floor_model(layers, hidden, inner, heads, precision))
    ops = Counter(n.op_type for n in onnx.load(path).graph.node)
    if precision == "fp32":
        assert linear_shapes(path) == model  # the same products, in the same order
        assert ops == {"MatMul": 12, "Attention": 2}
    else:  # one QuantizeLinear for Q, K and V, one before each other product
        assert ops == {"MatMulIntegerToFloat": 12, "QuantizeLinear": 8, "Attention": 2}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 7, hidden)).astype(np.float32)
    y = sess.run(None, {"x": x, "mask": np.zeros((2, 1, 7, 7), np.float32)})[0]
    assert y.shape == (2, 7, hidden) and np.isfinite(y).all()
    assert 0.05 < float(np.abs(y).mean()) < 20  # scaled weights keep values O(1)


def test_floors_run_paired_beside_embedrt(bert_int8, tmp_path):
    cmd = [sys.executable, str(BENCH / "latency.py"), "--artifact", str(bert_int8)]
    cmd += ["--st-model", "unused", "--corpus", "sentences", "--texts", "8", "--block", "4"]
    cmd += ["--warm", "1", "--gap-ms", "1", "--baseline", "embedrt-int8"]
    cmd += ["--candidates", "embedrt-int8,floor-fp32,floor-int8", "--out", str(tmp_path / "lat")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "lat.json").read_text())
    assert list(report["results"]) == ["embedrt-int8", "floor-fp32", "floor-int8"]
    for name, times in report["times_ms"].items():
        assert len(times) == 8 and min(times) > 0, name


def test_layouts_other_than_whole_layers_are_refused(bert_int8):
    model = linear_shapes(bert_int8 / "model.onnx")
    for shapes in ([], model[:5], model + [(32, 16)], model[1:] + model[:1]):
        with pytest.raises(ValueError, match="not layers of 6"):
            layer_shapes(shapes)
    with pytest.raises(ValueError, match="no ONNX Attention node"):
        attention_attrs(bert_int8 / "model.onnx")  # torch's attention nodes
