"""The optimized variants on a tiny model of each transformer family: opt where ONNX Runtime
fuses attention (the BERT family, every layer, checked), refused elsewhere with what fused and
why; fp16 built or refused with its reason; int8's attention as ONNX's Attention where torch
wrote it BERT's way; the export itself never fails for any of them."""

import json

import pytest
from fixtures.st_zoo import DECODERS, FAMILIES, HEADS, HIDDEN, LAYERS, build_family

from embedrt import ConfigError, Encoder, load_manifest
from embedrt.export import export_model, read_source
from embedrt.export.optimize import FULLY_FUSED, Geometry


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """(family, source folder, artifact folder) with opt, fp16 and int8 asked for."""
    root = tmp_path_factory.mktemp(request.param)
    src = build_family(root / "st", request.param)
    export_model(src, root / "artifact", variants=("opt", "fp16", "int8"))
    return request.param, src, root / "artifact"


def test_geometry_read_from_the_familys_own_keys(family):
    name, src, _ = family
    geometry = Geometry.from_config(read_source(src).transformer_path / "config.json")
    assert geometry == Geometry(LAYERS, HEADS, HIDDEN, name)
    assert geometry.fully_fused == (name in FULLY_FUSED)
    assert geometry.optimizer_type == ("qwen3" if name in DECODERS else "bert")


def test_opt_where_attention_fuses_else_refused_with_the_reason(family):
    name, _, artifact = family
    m = load_manifest(artifact)
    if name in FULLY_FUSED:
        opt = m.variant("opt")
        assert opt.fused_ops["Attention"] == LAYERS, opt.fused_ops
        assert opt.quality["parity_vs_sentence_transformers"]["min_cosine"] >= 0.99999
        assert "opt" not in m.refused and opt.notes == ""
        return
    assert "opt" not in [v.name for v in m.variants]
    assert not (artifact / "model_opt.onnx").exists()
    why = m.refused["opt"]
    assert f"Attention 0 of {LAYERS}" in why and f"for a {name} model" in why, why
    assert "fuses at load anyway" in why


def test_fp16_built_or_refused_with_the_reason(family):
    name, _, artifact = family
    m = load_manifest(artifact)
    if name in DECODERS:  # fp16.py finds the pooling tail after a LayerNormalization; RMSNorm
        assert "LayerNormalization" in m.refused["fp16"]
        assert not (artifact / "model_fp16.onnx").exists()
        return
    fp16 = m.variant("fp16")
    assert fp16.quality["gate"] == "passed"
    assert fp16.quality["parity_vs_fp32"]["min_cosine"] >= 0.999


# Families whose exported attention is torch's BERT-style pattern (export/attention_match.py),
# MPNet's with the position bias every layer shares; ModernBERT and the decoders write theirs
# otherwise.
ATTENTION_OP = {"bert", "distilbert", "electra", "roberta", "xlm-roberta", "mpnet"}


def test_int8_is_built_for_every_family(family):
    # DeBERTa's relative position embeddings [1, 2k, hidden] feed linear layers too: SmoothQuant's
    # calibration once indexed them by the batch's padding mask and int8 was refused
    name, _, artifact = family
    m = load_manifest(artifact)
    assert "int8" not in m.refused, (name, m.refused.get("int8"))
    assert m.variant("int8").quality["batch_invariance_min_cosine"] >= 0.9999


def test_int8_attention_as_onnx_attention_where_the_pattern_is(family):
    name, _, artifact = family
    m = load_manifest(artifact)
    int8 = m.variant("int8")
    assert int8.fused_ops["attention"] == (LAYERS if name in ATTENTION_OP else 0), name
    enc = Encoder.load(artifact, device="cpu", precision="int8")
    one = [enc.encode(t) for t in ("a dog", "the quick brown fox jumps")]
    both = enc.encode(["a dog", "the quick brown fox jumps"])  # padded together
    assert abs(both - one).max() <= 1e-5


def test_auto_loads_what_the_export_kept(family):
    name, _, artifact = family
    m = load_manifest(artifact)
    enc = Encoder.load(artifact, device="cpu")
    int8_passed = "int8" not in m.refused and m.variant("int8").quality.get("gate") == "passed"
    assert enc.info.variant == (
        "int8" if int8_passed else "opt" if name in FULLY_FUSED else "fp32"
    ), m.variant("int8").quality.get("gate") if "int8" not in m.refused else m.refused["int8"]
    assert enc.encode(["a dog", "the quick brown fox"]).shape == (2, HIDDEN)


def test_geometry_refuses_a_config_without_its_keys(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "distilbert", "n_layers": 6, "n_heads": 12}))
    with pytest.raises(ConfigError, match="model_type 'distilbert' has no dim"):
        Geometry.from_config(path)
    path.write_text(
        json.dumps({"model_type": "distilbert", "n_layers": 6, "n_heads": 12, "dim": 768})
    )
    assert Geometry.from_config(path) == Geometry(6, 12, 768, "distilbert")
