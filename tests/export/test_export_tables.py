"""export/tables.py: which initializers are token tables, and the split graph computes what the
graph holding them did, in plain ONNX Runtime and in the runtime."""

import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from embedrt.export.tables import ALIGN, graph_entry, token_tables
from embedrt.manifest import TABLES_METADATA_KEY, Variant, sha256_file
from embedrt.verified import verified_tables


def _model(tables: dict[str, np.ndarray]) -> onnx.ModelProto:
    """ids -> Cast(int32) -> Gather(word) * Gather(scale) + Gather(pos, positions) + bf16 lookup."""
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "l"])
    pos = helper.make_tensor_value_info("positions", TensorProto.INT64, ["b", "l"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", "l", 8])
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids32"], to=TensorProto.INT32),
        helper.make_node("Gather", ["word", "ids32"], ["w"]),
        helper.make_node("Gather", ["scale", "input_ids"], ["s"]),
        helper.make_node("Gather", ["pos", "positions"], ["p"]),  # not by input_ids: stays
        helper.make_node("Gather", ["bf16", "input_ids"], ["h"]),  # a type the runtime lacks
        helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["w", "s"], ["ws"]),
        helper.make_node("Add", ["ws", "p"], ["wsp"]),
        helper.make_node("Add", ["wsp", "hf"], ["out"]),
    ]
    inits = [numpy_helper.from_array(a, n) for n, a in tables.items()]
    bf16 = helper.make_tensor("bf16", TensorProto.BFLOAT16, [50, 8], [0.5] * 400)
    graph = helper.make_graph(nodes, "g", [ids, pos], [out], inits + [bf16])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _tables():
    rng = np.random.default_rng(0)
    return {
        "word": rng.standard_normal((50, 8)).astype(np.float32),
        "scale": rng.random((50, 1)).astype(np.float32),
        "pos": rng.standard_normal((16, 8)).astype(np.float32),
    }


def test_token_tables_are_the_lookups_by_input_ids_of_a_known_type():
    model = _model(_tables())
    assert [t.name for t in token_tables(model.graph)] == ["word", "scale"]
    # ONNX Runtime's fused embedding reads its word table (input 2) by input_ids too
    eln = helper.make_node(
        "EmbedLayerNormalization",
        ["input_ids", "", "word", "pos", "", "g", "b"],
        ["e", ""],
        domain="com.microsoft",
    )
    model.graph.node.insert(0, eln)
    assert [t.name for t in token_tables(model.graph)] == ["word", "scale"]


def test_the_split_graph_computes_what_it_did(tmp_path):
    onnx.save(_model(_tables()), str(tmp_path / "m.onnx"))
    feeds = {
        "input_ids": np.array([[0, 49, 7], [3, 3, 1]], np.int64),
        "positions": np.array([[0, 1, 2], [0, 1, 15]], np.int64),
    }
    want = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, feeds)[0]
    entry = graph_entry(tmp_path, "m.onnx")
    assert entry["data"].file == "m.onnx_data"
    assert entry["data"].sha256 == sha256_file(tmp_path / "m.onnx_data")
    assert entry["sha256"] == sha256_file(tmp_path / "m.onnx")
    assert [(t.name, t.shape, t.offset) for t in entry["tables"]] == [
        ("word", (50, 8), 0),
        ("scale", (50, 1), ALIGN),  # each on its own page
    ]
    model = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    external = {t.name for t in model.graph.initializer if t.data_location == 1}
    assert external == {"word", "scale"}
    recorded = {p.key: p.value for p in model.metadata_props}[TABLES_METADATA_KEY]
    assert json.loads(recorded) == {
        "data_sha256": entry["data"].sha256,  # so the graph's sha256 stands for its tables too
        "tables": [["word", "float32", [50, 8], 0], ["scale", "float32", [50, 1], ALIGN]],
    }
    # plain ONNX Runtime by path reads the data file by its name
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, feeds)[0]
    np.testing.assert_array_equal(got, want)
    # the runtime reads back exactly the arrays
    variant = Variant(name="fp32", precision="fp32", providers=(), **entry)
    arrays = verified_tables(tmp_path, variant)
    for name in ("word", "scale"):
        np.testing.assert_array_equal(arrays[name], _tables()[name])
        assert not arrays[name].flags.writeable


def test_a_graph_without_token_tables_is_left_alone(tmp_path):
    model = _model(_tables())
    for node in model.graph.node:  # the lookups now read by positions only
        if node.op_type == "Gather":
            node.input[1] = "positions"
    del model.graph.node[0]
    onnx.save(model, str(tmp_path / "m.onnx"))
    before = sha256_file(tmp_path / "m.onnx")
    entry = graph_entry(tmp_path, "m.onnx")
    assert entry == {"file": "m.onnx", "sha256": before, "data": None, "tables": ()}
    assert not (tmp_path / "m.onnx_data").exists()


def test_the_graph_s_sha256_changes_with_its_tables_and_keeps_other_metadata(tmp_path):
    # TensorRT's engine cache and a job's identity key on the graph's sha256: two graphs that
    # differ only in a table must not share it.
    shas = []
    for scale in (1.0, 2.0):
        tables = _tables()
        tables["word"] = tables["word"] * scale
        model = _model(tables)
        onnx.helper.set_model_props(model, {"producer.note": "kept"})
        (tmp_path / str(scale)).mkdir()
        onnx.save(model, str(tmp_path / str(scale) / "m.onnx"))
        shas.append(graph_entry(tmp_path / str(scale), "m.onnx")["sha256"])
        props = onnx.load(str(tmp_path / str(scale) / "m.onnx"), load_external_data=False)
        assert {p.key for p in props.metadata_props} == {"producer.note", TABLES_METADATA_KEY}
    assert shas[0] != shas[1]
