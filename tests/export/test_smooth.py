"""SmoothQuant (export/smooth.py): the smoothed fp32 graph computes the same vectors, and int8
built from it is closer to fp32 than int8 without it, on a real model and real text."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fixtures.st_zoo import build_family

from embedrt.export import export_model
from embedrt.export.datasets import load_stsb
from embedrt.export.quantize import quantize_int8
from embedrt.export.smooth import channel_absmax, linear_inputs, smooth
from embedrt.tokenizer import TextTokenizer, pad_rows


def _feeds(artifact, texts, pad_id, batch=8):
    rows = TextTokenizer.load(artifact / "tokenizer.json", 64).tokenize(texts)
    for i in range(0, len(rows), batch):
        ids, mask = pad_rows(rows[i : i + batch], max(map(len, rows[i : i + batch])), pad_id)
        yield {"input_ids": ids, "attention_mask": mask}


def _run(model_bytes, feeds):
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, f)[0] for f in feeds])


@pytest.mark.parametrize("family", ["mpnet", "qwen3"])
def test_smoothing_leaves_the_fp32_vectors_as_they_were(tmp_path, family):
    src = build_family(tmp_path / "src", family, seed=5)
    manifest = export_model(src, tmp_path / "out", variants=())
    texts = ["the man plays guitar", "a quick brown fox " * 10, "Москва 🙂", "dog"]
    model = onnx.load(str(tmp_path / "out" / "model.onnx"))
    before = _run(model.SerializeToString(), _feeds(tmp_path / "out", texts, manifest.pad_token_id))
    groups = linear_inputs(model.graph)
    absmax = channel_absmax(model, _feeds(tmp_path / "out", texts, manifest.pad_token_id))
    assert set(absmax) == set(groups) and all(a.min() >= 0 for a in absmax.values())
    assert smooth(model, absmax, 0.7) == len(groups) > 0
    onnx.checker.check_model(model)
    after = _run(model.SerializeToString(), _feeds(tmp_path / "out", texts, manifest.pad_token_id))
    np.testing.assert_allclose(after, before, atol=1e-5)
    # the layers' inputs are now divided: the largest channel came down
    probe = channel_absmax(model, _feeds(tmp_path / "out", texts, manifest.pad_token_id))
    assert any(probe[f"{x}_smoothed"].max() < absmax[x].max() for x in groups)


def test_smoothed_int8_is_closer_to_fp32_on_minilm(tmp_path):
    """all-MiniLM-L6-v2 quantized with and without SmoothQuant, both on the shipped calibration
    text, compared with fp32 on STS-B test sentences it was not calibrated on."""
    out = tmp_path / "minilm"
    export_model("all-MiniLM-L6-v2", out, variants=(), check_parity=False)
    texts = list(dict.fromkeys(load_stsb("test").first))[:200]
    fp32 = _run(str(out / "model.onnx"), _feeds(out, texts, 0))
    medians = {}
    for alpha in (None, 0.7):
        dst = tmp_path / f"int8-{alpha}.onnx"
        counts = quantize_int8(out / "model.onnx", dst, out / "tokenizer.json", 256, alpha=alpha)
        assert counts["smoothed_inputs"] == (0 if alpha is None else 24)
        vecs = _run(str(dst), _feeds(out, texts, 0))
        cos = (vecs * fp32).sum(1) / np.linalg.norm(vecs, axis=1) / np.linalg.norm(fp32, axis=1)
        medians[alpha] = float(np.median(cos))
    assert medians[0.7] > medians[None] + 0.001, medians
    assert not list(tmp_path.glob("**/.smoothed-*")), "the smoothed temporary file is removed"
