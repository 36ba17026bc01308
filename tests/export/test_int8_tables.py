"""The int8 file stores its word-embedding table as int8 rows with a scale per row
(export/quantize.py quantize_tables): the lookups it rewrites give each row back within half a
step of its scale, tables read by anything but a row lookup are left alone, and the real model's
int8 file shrinks by the table's three quarters."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from embedrt.export.quantize import EMBEDDING_TABLE_BYTES, quantize_tables


def _lookup_model(path, table, also_matmul=False):
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "l"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "l", table.shape[1]])
    nodes = [helper.make_node("Gather", ["table", "ids"], ["out"], name="lookup")]
    outputs = [out]
    if also_matmul:  # a tied table, also read as a weight: must stay fp32
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", table.shape[1]])
        nodes.append(helper.make_node("MatMul", ["x", "table_t"], ["logits"]))
        nodes.append(helper.make_node("Transpose", ["table"], ["table_t"]))
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", "v"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [ids] + ([x] if also_matmul else []),
        outputs,
        [numpy_helper.from_array(table, "table")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_lookups_give_each_row_back_within_half_a_step(tmp_path):
    rng = np.random.default_rng(0)
    table = (rng.standard_normal((4096, 96)) * 0.05).astype(np.float32)
    table[7, 3] = 1.5  # an outlier coarsens its own row only
    table[9] = 0.0  # an all-zero row stays zero (no division by a zero scale)
    assert table.nbytes >= EMBEDDING_TABLE_BYTES
    path = tmp_path / "m.onnx"
    _lookup_model(path, table)
    assert quantize_tables(path) == {"int8_tables": 1}
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    stored = {i.name: i.data_type for i in model.graph.initializer}
    assert stored == {"table_int8": TensorProto.INT8, "table_scale": TensorProto.FLOAT}
    ids = np.array([[0, 7, 9, 4095], [7, 7, 1, 2]], dtype=np.int64)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"ids": ids}
    )[0]
    want = table[ids]
    step = np.abs(table).max(axis=1) / 127
    assert np.all(np.abs(got - want) <= step[ids][..., None] / 2 + 1e-7)
    assert not np.allclose(got, want, atol=1e-6)  # it did round: the check above can fail
    np.testing.assert_array_equal(got[0, 2], 0.0)
    # the outlier's row is coarser than its neighbours, which keep their own fine steps
    assert step[7] > 10 * np.median(step)
    assert np.abs(got[1, 2] - table[1]).max() <= step[1] / 2 + 1e-7


def test_tables_read_otherwise_and_small_ones_stay_fp32(tmp_path):
    rng = np.random.default_rng(1)
    tied = (rng.standard_normal((4096, 96)) * 0.05).astype(np.float32)
    path = tmp_path / "tied.onnx"
    _lookup_model(path, tied, also_matmul=True)
    before = path.read_bytes()
    assert quantize_tables(path) == {"int8_tables": 0}
    assert path.read_bytes() == before  # untouched, not even rewritten
    small = (rng.standard_normal((512, 96)) * 0.05).astype(np.float32)  # position-table size
    _lookup_model(path, small)
    assert quantize_tables(path) == {"int8_tables": 0}
