"""Prompts, Matryoshka dimensions, similarity functions and token-less texts, as
sentence-transformers' encode has them, on the tiny offline model (no torch)."""

import json

import numpy as np
import pytest

from embedrt import ConfigError, Encoder, ModelLoadError
from embedrt.manifest import sha256_file

TEXTS = ["the man plays guitar", "a dog", "market fell sharply on monday"]
PROMPTS = {"query": "quick brown ", "passage": "someone is ", "empty": ""}


def _edit_manifest(artifact, **fields):
    path = artifact / "embedrt.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(fields)
    path.write_text(json.dumps(manifest), encoding="utf-8")


@pytest.fixture
def prompted(tiny_copy):
    _edit_manifest(tiny_copy, prompts=PROMPTS, default_prompt_name="passage")
    return Encoder.load(tiny_copy, device="cpu")


def test_prompts_are_prepended_as_sentence_transformers_does(prompted, tiny_encoder):
    plain = tiny_encoder  # the same weights, no prompts in its manifest

    def with_prefix(prefix):
        return plain.encode([prefix + t for t in TEXTS])

    # the default prompt applies when the call names none
    np.testing.assert_array_equal(prompted.encode(TEXTS), with_prefix("someone is "))
    np.testing.assert_array_equal(
        prompted.encode(TEXTS, prompt_name="query"), with_prefix("quick brown ")
    )
    # an explicit prompt wins, the empty prompt included (it turns the default off)
    np.testing.assert_array_equal(prompted.encode(TEXTS, prompt="a "), with_prefix("a "))
    np.testing.assert_array_equal(prompted.encode(TEXTS, prompt=""), plain.encode(TEXTS))
    np.testing.assert_array_equal(
        prompted.encode(TEXTS, prompt_name="query", prompt="a "), with_prefix("a ")
    )
    # the prompt changes the vectors (the check above is not vacuous)
    assert not np.allclose(prompted.encode(TEXTS, prompt_name="query"), plain.encode(TEXTS))
    # a single string keeps its 1-D shape
    np.testing.assert_allclose(
        prompted.encode(TEXTS[0]), with_prefix("someone is ")[0], rtol=0, atol=1e-6
    )


def test_encode_query_and_document_use_their_prompt_never_the_default(prompted, tiny_encoder):
    np.testing.assert_array_equal(
        prompted.encode_query(TEXTS), tiny_encoder.encode(["quick brown " + t for t in TEXTS])
    )
    # no "document" prompt: no prompt at all, as sentence-transformers' encode_document
    np.testing.assert_array_equal(prompted.encode_document(TEXTS), tiny_encoder.encode(TEXTS))
    np.testing.assert_array_equal(
        prompted.encode_document(TEXTS, prompt_name="query"), prompted.encode_query(TEXTS)
    )


def test_unknown_or_wrong_prompt_is_a_config_error(prompted, tiny_encoder):
    with pytest.raises(ConfigError, match="'doc' is not one of the model's prompts"):
        prompted.encode(TEXTS, prompt_name="doc")
    with pytest.raises(ConfigError, match=r"prompts \(none\)"):
        tiny_encoder.encode(TEXTS, prompt_name="query")
    for bad in (3, ["query"]):
        with pytest.raises(ConfigError):
            prompted.encode(TEXTS, prompt_name=bad)
    with pytest.raises(ConfigError, match="prompt must be a string"):
        prompted.encode(TEXTS, prompt=b"query: ")


def test_dimensions_keep_the_first_floats_unnormalized(tiny_encoder):
    full = tiny_encoder.encode(TEXTS)
    for k in (1, 5, 16):
        part = tiny_encoder.encode(TEXTS, dimensions=k)
        assert part.shape == (3, k) and part.flags.c_contiguous
        np.testing.assert_array_equal(part, full[:, :k])
    assert tiny_encoder.encode(TEXTS[0], dimensions=4).shape == (4,)
    assert not np.allclose(np.linalg.norm(tiny_encoder.encode(TEXTS, dimensions=5), axis=1), 1)
    for bad in (0, 17, -1, 2.5, "4", True):
        with pytest.raises(ConfigError, match="dimensions must be an integer from 1 to 16"):
            tiny_encoder.encode(TEXTS, dimensions=bad)


@pytest.mark.parametrize("fn", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_follows_the_models_function(tiny_copy, fn):
    _edit_manifest(tiny_copy, similarity_fn=fn)
    enc = Encoder.load(tiny_copy, device="cpu")
    a = enc.encode(TEXTS) * np.array([[1.0], [2.0], [0.5]], dtype=np.float32)
    b = enc.encode(TEXTS[:2])
    expected = {
        "cosine": lambda x, y: x @ y / np.linalg.norm(x) / np.linalg.norm(y),
        "dot": lambda x, y: x @ y,
        "euclidean": lambda x, y: -np.sqrt(((x - y) ** 2).sum()),
        "manhattan": lambda x, y: -np.abs(x - y).sum(),
    }[fn]
    want = np.array([[expected(x, y) for y in b] for x in a])
    got = enc.similarity(a, b)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"prompts": {"q": 3}}, "prompts must map"),
        ({"prompts": ["q"]}, "prompts must map"),
        ({"prompts": {"q": "q: "}, "default_prompt_name": "p"}, "not one of the prompts"),
        ({"similarity_fn": "jaccard"}, "similarity_fn 'jaccard'"),
        ({"pooling": "mean+median"}, "each '\\+'-joined mode"),
    ],
)
def test_malformed_prompt_fields_fail_the_load(tiny_copy, fields, match):
    _edit_manifest(tiny_copy, **fields)
    with pytest.raises(ModelLoadError, match=match):
        Encoder.load(tiny_copy, device="cpu")


def test_token_less_texts_get_zero_vectors(tiny_copy, tiny_encoder):
    """A tokenizer that adds no special tokens (Qwen's) makes "" a row of no tokens: the zero
    vector, as sentence-transformers gives, alone, among others, or every row of a batch."""
    path = tiny_copy / "tokenizer.json"
    tok = json.loads(path.read_text(encoding="utf-8"))
    tok["post_processor"] = None
    path.write_text(json.dumps(tok), encoding="utf-8")
    manifest = json.loads((tiny_copy / "embedrt.json").read_text(encoding="utf-8"))
    manifest["tokenizer"]["sha256"] = sha256_file(path)
    (tiny_copy / "embedrt.json").write_text(json.dumps(manifest), encoding="utf-8")
    enc = Encoder.load(tiny_copy, device="cpu")
    assert enc.tokenize(["", "dog"]) == [[], [enc.tokenize(["dog"])[0][0]]]

    mixed = enc.encode(["", "the man plays guitar", "", "a dog"])
    np.testing.assert_array_equal(mixed[[0, 2]], 0.0)
    np.testing.assert_allclose(mixed[[1, 3]], enc.encode(["the man plays guitar", "a dog"]))
    assert np.linalg.norm(mixed[1]) > 0.5
    np.testing.assert_array_equal(enc.encode(["", ""]), np.zeros((2, 16), np.float32))
    np.testing.assert_array_equal(enc.encode(""), np.zeros(16, np.float32))
