"""Verified loading: missing, corrupted and escaping files are refused with the file named."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedrt import ConfigError, Encoder, ModelLoadError, load_manifest
from embedrt.manifest import sha256_file

TEXTS = ["a man plays the guitar", "the dog", "someone cooks food in the kitchen"]


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
        ("max_seq_length", 200, "cannot encode a text of 200 tokens"),
        ("max_seq_length", 2000, r"a text of 512 tokens \(the manifest's max_seq_length 2000\)"),
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


def test_what_loads_is_what_was_verified_even_if_the_file_changes_meanwhile(
    tiny_copy, tiny_encoder, monkeypatch
):
    # ONNX Runtime reads the file through the descriptor that was hashed: a file swapped between
    # the check and the load (an attacker, or a copy still in progress) is not what loads, and
    # one written in place is caught.
    import onnxruntime

    real = onnxruntime.InferenceSession
    model = tiny_copy / "model.onnx"
    good = model.read_bytes()

    def swap_first(path, *args, **kwargs):
        bad = tiny_copy / "bad.onnx"
        bad.write_bytes(good[:-100])
        bad.replace(model)  # the artifact's file is now another one
        return real(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", swap_first)
    enc = Encoder.load(tiny_copy, device="cpu", streams=1)
    np.testing.assert_allclose(enc.encode(TEXTS), tiny_encoder.encode(TEXTS), atol=1e-6)

    model.write_bytes(good)

    def write_in_place(path, *args, **kwargs):
        with open(model, "r+b") as f:  # a write (of the same byte: ONNX Runtime still parses it)
            f.seek(len(good) - 1)
            f.write(good[-1:])
        return real(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", write_in_place)
    with pytest.raises(ModelLoadError, match="changed while it was loaded"):
        Encoder.load(tiny_copy, device="cpu", streams=1)


def test_encode_a_lone_surrogate_string_and_load_none_are_typed_errors(tiny_encoder):
    from embedrt import ConfigError, InputError

    with pytest.raises(InputError, match="lone surrogate"):
        tiny_encoder.encode("\udfff")
    with pytest.raises(ConfigError, match="path must be an artifact directory"):
        Encoder.load(None)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(value, prefix=()):
    """Every key path into a decoded JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_tampered_manifest_loads_or_is_a_model_load_error(tiny_copy, data):
    # Whatever a hand (or a disk) does to one value of embedrt.json: the artifact loads and
    # encodes, or Encoder.load raises ModelLoadError; never a raw numpy or ONNX Runtime error.
    original = json.loads((tiny_copy / "embedrt.json").read_text())
    doc = json.loads(json.dumps(original))
    path = data.draw(st.sampled_from([p for p in _paths(doc) if p]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES)
    (tiny_copy / "embedrt.json").write_text(json.dumps(doc))
    try:
        enc = Encoder.load(tiny_copy, device="cpu")
    except (ModelLoadError, ConfigError):
        return
    finally:
        (tiny_copy / "embedrt.json").write_text(json.dumps(original))
    assert enc.encode(["a dog", "the cat"]).shape == (2, enc.dim)
