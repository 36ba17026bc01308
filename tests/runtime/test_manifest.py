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


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dim", 512, "dim 512|outputs 16 floats"),
        ("dim", 0, "dim must be an integer from 1"),
        ("dim", 3.7, "dim must be an integer from 1"),
        ("dim", True, "dim must be an integer from 1"),
        ("max_seq_length", 2000, "cannot encode a text of 2000 tokens"),
        ("max_seq_length", -5, "max_seq_length must be an integer from 1"),
        ("output", "nope", "has no output 'nope'"),
        ("output", 7, "output must be a non-empty string"),
        ("inputs", ["input_ids"], "this embedrt feeds input_ids, attention_mask"),
        ("pad_token_id", -1, "pad_token_id must be an integer from 0"),
    ],
)
def test_a_tampered_manifest_fails_at_load_naming_the_field(tiny_copy, field, value, message):
    # Before: each of these loaded, and failed at the first encode with a numpy or ONNX Runtime
    # error; a server on it started, said 200 on /health and answered every request 500.
    _edit(tiny_copy, lambda d: d.__setitem__(field, value))
    with pytest.raises(ModelLoadError, match=message):
        Encoder.load(tiny_copy, device="cpu")


def test_a_manifest_json_bomb_is_refused(tiny_copy):
    text = (tiny_copy / "embedrt.json").read_text()
    (tiny_copy / "embedrt.json").write_text(
        text[:-2] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    with pytest.raises(ModelLoadError, match="not valid JSON: nested too deeply"):
        Encoder.load(tiny_copy, device="cpu")
    (tiny_copy / "embedrt.json").write_text(text.replace('"dim": 16', '"dim": ' + "9" * 5000))
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        Encoder.load(tiny_copy, device="cpu")


def test_the_bytes_loaded_are_the_bytes_verified(tiny_copy, monkeypatch):
    # ONNX Runtime is handed the very bytes whose sha256 was checked: no second read of the file
    # for an attacker (or a copy still in progress) to swap between the check and the load.
    import onnxruntime

    seen = []
    real = onnxruntime.InferenceSession

    def recording(model, *args, **kwargs):
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    Encoder.load(tiny_copy, device="cpu", streams=1)
    assert seen == [(tiny_copy / "model.onnx").read_bytes()]


def test_encode_a_lone_surrogate_string_and_load_none_are_typed_errors(tiny_encoder):
    from embedrt import ConfigError, InputError

    with pytest.raises(InputError, match="lone surrogate"):
        tiny_encoder.encode("\udfff")
    with pytest.raises(ConfigError, match="path must be an artifact directory"):
        Encoder.load(None)
