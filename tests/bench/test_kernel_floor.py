"""bench/kernel_floor.py: the floor graphs hold the model's own linear products, in the form its
graphs run them, and one attention a layer; they run as paired latency candidates beside
embedrt, and are skipped, saying why, for a model they cannot be built for."""

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

import latency  # noqa: E402
from kernel_floor import floor_layout, floor_model, layer_shapes, linear_shapes  # noqa: E402
from worker import CANDIDATES  # noqa: E402

pytestmark = [pytest.mark.filterwarnings(line) for line in TORCH_ONNX_WARNINGS]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    from embedrt.export import export_model

    root = tmp_path_factory.mktemp("floor")
    export_model(build_family(root / "st", "bert"), root / "artifact", variants=("opt", "int8"))
    return root / "artifact"


def nodes(path, op):
    """Each `op` node's inputs: the initializer's shape, None for a computed input."""
    graph = onnx.load(path, load_external_data=False).graph
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    for n in graph.node:  # torch shares equal tensors between layers through Identity
        if n.op_type == "Identity" and n.input[0] in shapes:
            shapes[n.output[0]] = shapes[n.input[0]]
    return [[shapes.get(i) for i in n.input] for n in graph.node if n.op_type == op]


@pytest.mark.parametrize("form", ["fp32", "fp32-qkv", "int8"])
def test_the_floor_holds_the_models_products_as_its_graphs_run_them(bert, tmp_path, form):
    model = linear_shapes(bert / "model.onnx")
    layers, hidden, inner, attention = floor_layout(bert)
    assert (layers, hidden, inner, attention["q_num_heads"]) == (2, 32, 64, 2)
    path = tmp_path / "floor.onnx"
    path.write_bytes(floor_model(layers, hidden, inner, attention, form))
    ops = Counter(n.op_type for n in onnx.load(path).graph.node)
    if form == "fp32":
        assert linear_shapes(path) == model  # the same products, in the same order
        assert ops == {"MatMul": 12, "Attention": 2}
    elif form == "fp32-qkv":  # Q, K and V inside com.microsoft's Attention, as the opt graph
        assert nodes(path, "Attention") == nodes(bert / "model_opt.onnx", "Attention")
        assert ops == {"MatMul": 6, "Attention": 2}
    else:  # every input the int8 graph's products take, of the same shapes, in the same order
        assert nodes(path, "MatMulIntegerToFloat") == nodes(
            bert / "model_int8.onnx", "MatMulIntegerToFloat"
        )
        assert ops == {"MatMulIntegerToFloat": 12, "QuantizeLinear": 8, "Attention": 2}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 7, hidden)).astype(np.float32)
    mask = {"lengths": np.full(2, 7, np.int32), "mask": np.zeros((2, 1, 7, 7), np.float32)}
    y = sess.run(None, {"x": x} | {i.name: mask[i.name] for i in sess.get_inputs()[1:]})[0]
    assert y.shape == (2, 7, hidden) and np.isfinite(y).all()
    assert 0.05 < float(np.abs(y).mean()) < 20  # scaled weights keep values O(1)


def run(artifact: Path, out: Path, candidates: str, baseline: str) -> dict:
    cmd = [sys.executable, str(BENCH / "latency.py"), "--artifact", str(artifact)]
    cmd += ["--st-model", "unused", "--corpus", "sentences", "--texts", "8", "--block", "4"]
    cmd += ["--warm", "1", "--gap-ms", "1", "--baseline", baseline]
    cmd += ["--candidates", candidates, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(out.with_suffix(".json").read_text())


def test_floors_run_paired_beside_embedrt(bert, tmp_path):
    assert set(latency.FLOORS) <= set(CANDIDATES)  # the default candidates all exist
    report = run(
        bert, tmp_path / "lat", ",".join(("embedrt-int8", *latency.FLOORS)), "embedrt-int8"
    )
    assert list(report["results"]) == ["embedrt-int8", *latency.FLOORS]
    assert report["skipped"] == {}
    for name, times in report["times_ms"].items():
        assert len(times) == 8 and min(times) > 0, name
    assert (
        "floor-fp32, floor-fp32-qkv, floor-int8: the model's" in (tmp_path / "lat.md").read_text()
    )


def test_floors_are_skipped_with_the_reason_where_they_cannot_be_built(tiny_artifact, tmp_path):
    report = run(
        tiny_artifact, tmp_path / "lat", "embedrt-fp32,floor-fp32,floor-int8", "embedrt-fp32"
    )
    assert list(report["results"]) == ["embedrt-fp32"]
    assert report["skipped"] == dict.fromkeys(
        ["floor-fp32", "floor-int8"], "no int8 variant to take the heads from"
    )
    assert "floor-int8: skipped, no int8 variant" in (tmp_path / "lat.md").read_text()


def test_layouts_other_than_whole_layers_are_refused(bert):
    model = linear_shapes(bert / "model.onnx")
    for shapes in ([], model[:5], model + [(32, 16)], model[1:] + model[:1]):
        with pytest.raises(ValueError, match="not layers of 6"):
            layer_shapes(shapes)
