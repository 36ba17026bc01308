"""Optimized variants on a tiny random BERT: fusions counted, int8 batch-invariant, fp16 tail in
fp32, gates recorded, and the runtime choosing among them."""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from embedrt import ConfigError, Encoder, load_manifest
from embedrt.export import export_model
from embedrt.export.fp16 import pooling_tail
from embedrt.export.optimize import Geometry, check_fusions, optimize
from embedrt.export.variant_manifest import gate
from embedrt.variants import choose_variant

TEXTS = ["the man plays guitar", "a dog", "", "someone fell on monday " * 3, "the quick brown fox"]


@pytest.fixture(scope="module")
def tiny_variants(tmp_path_factory, st_mean):
    out = tmp_path_factory.mktemp("variants") / "artifact"
    export_model(st_mean, out)
    return out


def test_all_variants_written_with_gates(tiny_variants):
    m = load_manifest(tiny_variants)
    names = [v.name for v in m.variants]
    assert names[:2] == ["opt", "fp32"], "opt is preferred over the portable fp32 (CPU, CUDA)"
    assert m.variant("opt").providers == ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert not list(tiny_variants.glob(".*.onnx"))  # the fully fused graph fp16 came from is gone
    for v in m.variants:
        assert (tiny_variants / v.file).is_file()
        # every graph keeps its word table (int8: its rows and scales) in its own data file
        assert v.data is not None and v.data.file == v.file + "_data" and v.tables
        assert (tiny_variants / v.data.file).is_file()
        assert v.quality["gate"] == "passed"
        assert v.quality["batch_invariance_min_cosine"] >= 0.99999
    assert set(names) | set(m.refused) == {"opt", "fp32", "int8", "fp16"}
    opt = m.variant("opt")
    assert opt.fused_ops["Attention"] == 2 and opt.fused_ops["LayerNormalization"] == 4
    assert "SkipLayerNormalization" not in opt.fused_ops  # left for ONNX Runtime to fuse at load
    assert opt.quality["parity_vs_sentence_transformers"]["min_cosine"] >= 0.99999
    assert "stsb_dev_spearman" in m.variant("fp32").quality


def test_int8_is_batch_invariant_or_refused_with_numbers(tiny_variants):
    m = load_manifest(tiny_variants)
    if "int8" in m.refused:
        assert "Spearman" in m.refused["int8"] or "batch" in m.refused["int8"]
        assert not (tiny_variants / "model_int8.onnx").exists()
        return
    int8 = m.variant("int8")
    # Q, K, V, O, FFN in, FFN out x 2 layers, all statically quantized
    assert int8.fused_ops["MatMulIntegerToFloat"] == int8.fused_ops["linear_layers"] == 12
    assert int8.fused_ops["bias_folded"] == 12  # every linear layer's bias Add folded in
    assert abs(int8.quality["stsb_dev_spearman_minus_fp32"]) <= 0.01
    graph = onnx.load(str(tiny_variants / "model_int8.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "QLinearMatMul" not in ops and "DequantizeLinear" not in ops  # no uint8 round trip left
    assert all(len(n.input) == 7 for n in graph.node if n.op_type == "MatMulIntegerToFloat")
    used = {name for n in graph.node for name in n.input}
    assert [
        i.name for i in graph.initializer if i.name not in used
    ] == []  # nothing left to warn about


@pytest.mark.parametrize("variant", ["fp32", "opt", "int8", "fp16"])
def test_every_variant_gives_a_text_the_same_vector_in_any_batch(tiny_variants, variant):
    if variant not in [v.name for v in load_manifest(tiny_variants).variants]:
        pytest.skip(f"{variant} refused by its gate on this tiny random model")
    enc = Encoder.load(tiny_variants, device="cpu", variant=variant)
    alone = np.stack([enc.encode(t) for t in TEXTS])
    for batch_size in (2, 3, 64):
        mixed = enc.encode(TEXTS[::-1] + TEXTS, batch_size=batch_size)[len(TEXTS) :]
        cos = (alone * mixed).sum(1) / np.linalg.norm(alone, axis=1) / np.linalg.norm(mixed, axis=1)
        assert cos.min() >= 0.99999, (variant, batch_size, cos)


def test_runtime_picks_variants(tiny_variants):
    m = load_manifest(tiny_variants)
    auto = Encoder.load(tiny_variants, device="cpu")
    assert auto.info.variant == ("int8" if "int8" not in m.refused else "fp32")
    assert Encoder.load(tiny_variants, device="cpu", precision="fp32").info.variant == "opt"
    assert choose_variant(m, "cuda", "fp32").name == "opt"
    assert choose_variant(m, "tensorrt", "fp32").name == "fp32"  # no contrib ops for TensorRT
    assert Encoder.load(tiny_variants, device="cpu", variant="opt").info.file == "model_opt.onnx"
    assert Encoder.load(tiny_variants, device="cpu", variant="fp32").info.file == "model.onnx"
    with pytest.raises(ConfigError, match="no variant 'bf16'"):
        Encoder.load(tiny_variants, device="cpu", variant="bf16")


def test_fp16_structure(tiny_variants):
    model = onnx.load(str(tiny_variants / "model_fp16.onnx"))
    g = model.graph
    assert [i.type.tensor_type.elem_type for i in g.input] == [TensorProto.INT64] * 2
    assert g.output[0].type.tensor_type.elem_type == TensorProto.FLOAT  # keep_io_types
    weights = [i for i in g.initializer if len(i.dims) == 2 and min(i.dims) > 8]
    assert weights and all(w.data_type == TensorProto.FLOAT16 for w in weights)
    tail = set(pooling_tail(g))
    ops = {n.op_type for n in g.node if n.name in tail}
    assert {"ReduceSum", "Div"} <= ops, ops
    # The tail's inputs come through a Cast to float32 from the fp16 body.
    producers = {o: n for n in g.node for o in n.output}
    fed = [producers[i] for n in g.node if n.name in tail for i in n.input if i in producers]
    assert any(p.op_type == "Cast" and p.attribute[0].i == TensorProto.FLOAT for p in fed)
    q = load_manifest(tiny_variants).variant("fp16")
    assert "unverified on a GPU" in q.notes and q.quality["parity_vs_fp32"]["min_cosine"] >= 0.999


def test_optimizer_that_fuses_nothing_fails(tiny_artifact, tmp_path):
    with pytest.raises(ConfigError, match="fused less than a 6-layer BERT"):
        check_fusions(
            {"SkipLayerNormalization": 12, "BiasGelu": 6}, Geometry(6, 12, 384), attention=True
        )
    with pytest.raises(
        ConfigError, match="LayerNormalization 1 < 12"
    ):  # the residual norms, unfused
        check_fusions(
            {"Attention": 6, "BiasGelu": 6, "LayerNormalization": 1},
            Geometry(6, 12, 384),
            attention=True,
            skip_layer_norm=False,
        )
    # The tiny hand-built graph is not a BERT: the optimizer finds nothing to fuse.
    with pytest.raises(ConfigError, match="Attention 0 < 1"):
        optimize(tiny_artifact / "model.onnx", tmp_path / "opt.onnx", Geometry(1, 1, 16))
    assert not (tmp_path / "opt.onnx").exists()


def test_refused_variant_is_deleted_and_recorded(tiny_variants, tmp_path):
    folder = shutil.copytree(tiny_variants, tmp_path / "copy")
    m = load_manifest(folder)
    if "int8" in m.refused:
        pytest.skip("int8 already refused")
    m2 = gate(folder, m, "int8", {"stsb_dev_spearman": 0.5}, "STS-B dev Spearman 0.5 is too low")
    assert not (folder / "model_int8.onnx").exists()
    assert not (folder / "model_int8.onnx_data").exists()  # its tables went with it
    assert "int8" not in [v.name for v in load_manifest(folder).variants]
    assert "0.5 is too low" in json.loads((folder / "embedrt.json").read_text())["refused"]["int8"]
    assert m2.refused == load_manifest(folder).refused
