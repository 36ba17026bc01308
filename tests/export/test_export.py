"""Export on tiny random BERTs: one fused graph, both folder layouts, parity, refusals."""

import json
import shutil

import numpy as np
import onnx
import pytest
from conftest import build_st_model, to_old_layout
from sentence_transformers import SentenceTransformer

from embedrt import Encoder, load_manifest
from embedrt.cli import main
from embedrt.errors import ConfigError, ModelLoadError
from embedrt.export import PARITY_SENTENCES, ParityError, export_model, read_source
from embedrt.export import artifact as artifact_module
from embedrt.export.parity import check_fp32

CASES = [
    ("mean", True, "5.7+"),
    ("cls", False, "5.7+"),
    ("max", True, "pre-5.7"),
    ("mean", False, "pre-5.7"),
]


@pytest.mark.parametrize("pooling, normalize, layout", CASES)
def test_export_matches_sentence_transformers(tmp_path, pooling, normalize, layout):
    src = build_st_model(tmp_path / "src", pooling, normalize, max_seq_length=24, seed=3)
    if layout == "pre-5.7":
        to_old_layout(src, 24, pooling, normalize)
    source = read_source(src)
    assert (source.layout, source.pooling, source.normalize, source.max_seq_length) == (
        layout,
        pooling,
        normalize,
        24,
    )

    manifest = export_model(src, tmp_path / "out", variants=())
    parity = manifest.variants[0].quality["parity_vs_sentence_transformers"]
    assert parity["max_abs_diff"] <= 1e-4 and parity["min_cosine"] >= 0.99999

    # Independently of the export's own check: the runtime equals sentence-transformers.
    st = SentenceTransformer(str(src), device="cpu")
    texts = ["the man plays guitar", "", "a dog " * 40, "someone fell on monday"]
    ref = st.encode(texts, convert_to_numpy=True)
    ours = Encoder.load(tmp_path / "out", device="cpu").encode(texts)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    norms = np.linalg.norm(ours, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5) == normalize


@pytest.mark.parametrize("layout", ["5.7+", "pre-5.7"])
def test_max_seq_length_given_truncates_as_sentence_transformers_does(tmp_path, layout, capsys):
    # `model.max_seq_length = N` in sentence-transformers; how a long-context model's memory
    # per text is bounded. The artifact's tokenizer, manifest and parity check all take N.
    src = build_st_model(tmp_path / "src", max_seq_length=24, seed=4)
    if layout == "pre-5.7":
        to_old_layout(src, 24, "mean", True)
    manifest = export_model(src, tmp_path / "out", variants=(), max_seq_length=10)
    assert manifest.max_seq_length == 10 and manifest.source["max_seq_length"] == 24
    tok = json.loads((tmp_path / "out" / "tokenizer.json").read_text())
    assert tok["truncation"]["max_length"] == 10
    texts = ["the man plays guitar in the kitchen while a woman cooks food " * 2, "a dog"]
    st = SentenceTransformer(str(src), device="cpu")
    whole = st.encode(texts, convert_to_numpy=True)
    st.max_seq_length = 10
    ref = st.encode(texts, convert_to_numpy=True)
    ours = Encoder.load(tmp_path / "out", device="cpu").encode(texts)
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert float(ours[0] @ whole[0]) < 0.999  # the long text really was cut at 10
    assert main(["info", str(tmp_path / "out")]) == 0
    assert "max_seq_length 10 (the model's 24)" in capsys.readouterr().out
    for bad in (25, 1, 10.0, True):
        with pytest.raises(ConfigError, match="max_seq_length must be an integer from 2 to 24"):
            export_model(src, tmp_path / "bad", variants=(), max_seq_length=bad)
    assert not (tmp_path / "bad").exists()


def test_artifact_structure(tmp_path, st_mean):
    export_model(st_mean, tmp_path / "out", variants=())
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["embedrt.json", "model.onnx", "model.onnx_data", "tokenizer.json"]
    model = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["sentence_embedding"]
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert all(dims), "batch and sequence axes must be dynamic"
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, "model.onnx must stay portable"
    tok = json.loads((out / "tokenizer.json").read_text())
    assert tok["truncation"]["max_length"] == 24
    assert tok["padding"]["strategy"] == "BatchLongest"
    m = load_manifest(out)
    assert m.max_seq_length == 24 and m.dim == 32 and m.source["layout"] == "5.7+"
    assert m.tools["torch"].startswith("2.") and m.source["weights_sha256"]


def test_reexport_replaces_artifact(tmp_path, st_mean):
    export_model(st_mean, tmp_path / "out", check_parity=False, variants=())
    export_model(st_mean, tmp_path / "out", variants=())
    assert load_manifest(tmp_path / "out").variants[0].quality
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refuses_to_overwrite_foreign_directory(tmp_path, st_mean):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an embedrt artifact"):
        export_model(st_mean, tmp_path / "out")
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_a_stack_not_starting_with_a_transformer_is_refused(tmp_path, st_mean):
    src = shutil.copytree(st_mean, tmp_path / "swapped")
    modules = json.loads((src / "modules.json").read_text())
    modules[0], modules[1] = modules[1], modules[0]
    (src / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="first module is a .*Transformer"):
        export_model(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_old_layout_pooling_modes_concatenate_in_sentence_transformers_order(tmp_path, st_mean):
    src = to_old_layout(shutil.copytree(st_mean, tmp_path / "two"), 24, "mean", True)
    cfg = json.loads((src / "1_Pooling" / "config.json").read_text())
    cfg["pooling_mode_max_tokens"] = True  # written after mean, concatenated before it
    (src / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    source = read_source(src)
    assert (source.pooling, source.dim) == ("max+mean", 64)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="modules.json is missing"):
        read_source(tmp_path)
    with pytest.raises(ModelLoadError, match="neither a folder nor a known model"):
        read_source("no-such-model")


def test_parity_failure_refuses_and_writes_nothing(tmp_path, st_mean, monkeypatch):
    """A graph that disagrees with sentence-transformers fails the export with the numbers."""
    real = artifact_module.reference_embeddings

    def shifted(path, sentences, *rest):
        ref = real(path, sentences, *rest)
        ref[3] = np.roll(ref[3], 1)  # one sentence's reference differs, as a wrong graph would
        return ref

    monkeypatch.setattr(artifact_module, "reference_embeddings", shifted)
    with pytest.raises(ParityError, match=r"max abs diff .* min cosine .*refused"):
        export_model(st_mean, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_parity_check_detects_a_different_model(tmp_path, st_mean):
    """check_fp32 against another model's embeddings: real numbers, real failure."""
    other = build_st_model(tmp_path / "other", "mean", True, seed=7)
    export_model(st_mean, tmp_path / "out", variants=())
    ref = SentenceTransformer(str(other), device="cpu").encode(list(PARITY_SENTENCES))
    with pytest.raises(ParityError) as e:
        check_fp32(tmp_path / "out", ref, PARITY_SENTENCES)
    assert "min cosine" in str(e.value)
