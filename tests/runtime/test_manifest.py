"""Verified loading: missing, corrupted and escaping files are refused with the file named."""

import json

import pytest

from embedrt import Encoder, ModelLoadError, load_manifest
from embedrt.manifest import sha256_file


def _edit(path, fn):
    data = json.loads((path / "embedrt.json").read_text())
    fn(data)
    (path / "embedrt.json").write_text(json.dumps(data))


def test_manifest_round_trip(tiny_artifact):
    m = load_manifest(tiny_artifact)
    assert m.dim == 16 and m.max_seq_length == 32 and m.pooling == "mean" and m.normalize
    assert m.variant("fp32").sha256 == sha256_file(tiny_artifact / "model.onnx")
    assert load_manifest(tiny_artifact) == m


def test_missing_directory_and_missing_manifest(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        Encoder.load(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="embedrt export"):
        Encoder.load(tmp_path)


def test_manifest_not_json(tiny_copy):
    (tiny_copy / "embedrt.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        Encoder.load(tiny_copy)


def test_manifest_missing_field(tiny_copy):
    _edit(tiny_copy, lambda d: d.pop("dim"))
    with pytest.raises(ModelLoadError, match="malformed.*dim"):
        Encoder.load(tiny_copy)


def test_manifest_future_format_refused(tiny_copy):
    _edit(tiny_copy, lambda d: d.update(format=99))
    with pytest.raises(ModelLoadError, match="format 99"):
        Encoder.load(tiny_copy)


def test_corrupted_model_names_the_file(tiny_copy):
    model = tiny_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="'model.onnx' is corrupted"):
        Encoder.load(tiny_copy, device="cpu")


def test_corrupted_tokenizer_names_the_file(tiny_copy):
    with open(tiny_copy / "tokenizer.json", "a") as f:
        f.write(" ")
    with pytest.raises(ModelLoadError, match="'tokenizer.json' is corrupted"):
        Encoder.load(tiny_copy, device="cpu")


def test_missing_model_names_the_file(tiny_copy):
    (tiny_copy / "model.onnx").unlink()
    with pytest.raises(ModelLoadError, match="'model.onnx' is missing"):
        Encoder.load(tiny_copy, device="cpu")


def test_invalid_onnx_with_matching_hash_is_a_load_error(tiny_copy):
    (tiny_copy / "model.onnx").write_bytes(b"this is not a protobuf")
    _edit(
        tiny_copy, lambda d: d["variants"][0].update(sha256=sha256_file(tiny_copy / "model.onnx"))
    )
    with pytest.raises(ModelLoadError, match="ONNX Runtime cannot load 'model.onnx'"):
        Encoder.load(tiny_copy, device="cpu")


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "sub/../../x.onnx"])
def test_paths_leaving_the_directory_refused(tiny_copy, name):
    _edit(tiny_copy, lambda d: d["variants"][0].update(file=name))
    with pytest.raises(ModelLoadError, match="leaves the artifact directory"):
        load_manifest(tiny_copy)


def test_symlink_leaving_the_directory_refused(tiny_copy, tmp_path):
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((tiny_copy / "model.onnx").read_bytes())
    (tiny_copy / "link.onnx").symlink_to(outside)
    _edit(tiny_copy, lambda d: d["variants"][0].update(file="link.onnx"))
    with pytest.raises(ModelLoadError, match="leaves the artifact directory"):
        load_manifest(tiny_copy)
