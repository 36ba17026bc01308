"""Every architecture users bring, exported and run exactly as sentence-transformers computes it:
a tiny random-weight model per family (tests/fixtures/st_zoo.py), each with its own kind of
tokenizer, special tokens and padding side, compared with SentenceTransformer.encode on empty,
over-long, non-ASCII and emoji text."""

from functools import partial

import numpy as np
import pytest
import torch
from conftest import exported
from fixtures.st_zoo import FAMILIES, FAMILY_POOLING, build_family
from sentence_transformers import SentenceTransformer

from embedrt import Encoder, load_manifest
from embedrt.export import read_source
from embedrt.export.parity import compare

TEXTS = [
    "",
    "the man plays guitar",
    "a quick brown fox " * 60,  # far past max_seq_length: truncated
    "Москва — столица России. Größere Städte: Wien, Graz.",
    "東京は日本の首都です 🙂🚀🔥",
    "   ",
    "e-mail@example.com 3.14159",
]


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    """name -> (source folder, artifact), built and exported once for the module."""
    builds = {
        name: partial(build_family, name=name, seed=seed) for seed, name in enumerate(FAMILIES)
    }
    return exported(tmp_path_factory.mktemp("families"), builds)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_exports_and_matches_sentence_transformers(families, name):
    src, artifact = families[name]
    manifest = load_manifest(artifact)
    assert manifest.source["architecture"] == name
    assert manifest.pooling == FAMILY_POOLING.get(name, "mean")
    parity = manifest.variants[0].quality["parity_vs_sentence_transformers"]
    assert parity["min_cosine"] >= 0.99999

    st = SentenceTransformer(str(src), device="cpu")
    # the word table lies in model.onnx_data, as the model has it, for the runtime to read
    word = st[0].auto_model.get_input_embeddings().weight
    tables = manifest.variant("fp32").tables
    assert [(t.dtype, t.shape) for t in tables] == [("float32", tuple(word.shape))]
    # the widest matrix product, which sizes a CPU run's tokens
    linears = [m.out_features for m in st.modules() if isinstance(m, torch.nn.Linear)]
    assert manifest.activation_width == max(linears)
    enc = Encoder.load(artifact, device="cpu")
    ref = st.encode(TEXTS, batch_size=4)
    ours = enc.encode(TEXTS, batch_size=3)  # other batch company than the reference's
    result = compare(ref, ours)
    assert result.min_cosine >= 0.99999 and result.max_abs_diff <= 1e-4, result
    np.testing.assert_allclose(np.linalg.norm(ours[1:3], axis=1), 1.0, atol=1e-5)
    # a prompt and Matryoshka dimensions, as sentence-transformers applies them
    with_prompt = compare(st.encode(TEXTS, prompt="query: "), enc.encode(TEXTS, prompt="query: "))
    assert with_prompt.min_cosine >= 0.99999, with_prompt
    np.testing.assert_allclose(
        enc.encode(TEXTS, dimensions=8), st.encode(TEXTS, truncate_dim=8), atol=1e-4
    )
    # the same tokens as sentence-transformers', truncation included
    st_lengths = [int(st.tokenize([t])["attention_mask"].sum()) for t in TEXTS]
    assert enc.count_tokens(TEXTS).tolist() == st_lengths
    assert max(st_lengths) == read_source(src).max_seq_length


def test_a_decoder_without_special_tokens_gives_zero_for_empty_text(families):
    """Qwen2's tokenizer adds no special tokens: "" has no tokens at all; sentence-transformers
    gives the zero vector, and so does embedrt (not an ONNX Runtime reshape error)."""
    src, artifact = families["qwen2"]
    enc = Encoder.load(artifact, device="cpu")
    assert enc.count_tokens([""]).tolist() == [0]
    ref = SentenceTransformer(str(src), device="cpu").encode(["", "the man"])
    ours = enc.encode(["", "the man"])
    np.testing.assert_array_equal(ref[0], 0.0)
    np.testing.assert_array_equal(ours[0], 0.0)
    np.testing.assert_allclose(ours[1], ref[1], atol=1e-5)


def test_left_padded_decoders_are_run_right_padded_with_the_same_result(families):
    """Qwen's tokenizer pads on the left; the artifact pads on the right (causal attention
    never looks at later padding, and last-token pooling finds the last real token): a batch of
    very different lengths agrees with sentence-transformers' left-padded batch."""
    src, artifact = families["qwen3"]
    st = SentenceTransformer(str(src), device="cpu")
    assert st.tokenizer.padding_side == "left"
    texts = ["a", "the man plays guitar while a woman cooks food in the kitchen " * 3]
    result = compare(st.encode(texts, batch_size=2), Encoder.load(artifact).encode(texts))
    assert result.min_cosine >= 0.99999, result


@pytest.mark.parametrize("name", ["roberta", "xlm-roberta", "mpnet"])
def test_positions_after_the_padding_id_are_not_counted(tmp_path, name):
    # These families number positions from pad_token_id + 1: of 128 position embeddings, 126
    # hold a text. A folder asking for more (here 500) exports at 126 and runs a long text;
    # at 128, every text past 126 tokens failed inside ONNX Runtime.
    from embedrt.export import export_model

    src = build_family(tmp_path / "src", name, max_seq_length=500)
    manifest = export_model(src, tmp_path / "out", variants=())
    assert manifest.max_seq_length == 126
    st = SentenceTransformer(str(src), device="cpu")
    st.max_seq_length = 126
    ref = st.encode(TEXTS, convert_to_numpy=True)
    ours = Encoder.load(tmp_path / "out", device="cpu").encode(TEXTS)
    result = compare(ref, ours)
    assert result.min_cosine >= 0.99999 and result.max_abs_diff <= 1e-4, result
