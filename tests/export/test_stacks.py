"""Every module stack users ship: each pooling mode, several concatenated, Dense layers before
and after the pooling with their activations, LayerNorm, Normalize or not, prompts with a
default, the model's similarity function and Matryoshka dimensions; each checked against
sentence-transformers' own output with the same arguments."""

import json
import shutil
from functools import partial

import numpy as np
import pytest
from conftest import exported
from fixtures.st_zoo import PROMPTS, STACKS, build_stack
from sentence_transformers import SentenceTransformer

from embedrt import ConfigError, Encoder, load_manifest
from embedrt.export import read_source
from embedrt.export.parity import compare

TEXTS = ["", "the man plays guitar", "a dog " * 80, "Größere Städte 🙂", "someone fell on monday"]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    builds = {
        name: partial(build_stack, seed=seed, **kwargs)
        for seed, (name, kwargs) in enumerate(STACKS.items())
    }
    return exported(tmp_path_factory.mktemp("stacks"), builds)


@pytest.mark.parametrize("name", list(STACKS))
def test_stack_matches_sentence_transformers(stacks, name):
    src, artifact = stacks[name]
    st = SentenceTransformer(str(src), device="cpu")
    enc = Encoder.load(artifact, device="cpu")
    assert enc.dim == st.get_embedding_dimension() == load_manifest(artifact).dim
    ref, ours = st.encode(TEXTS), enc.encode(TEXTS)
    result = compare(ref, ours)
    assert result.min_cosine >= 0.99999 and result.max_abs_diff <= 1e-4, result
    normalized = np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert normalized == STACKS[name].get("normalize", True)
    # Matryoshka: sentence-transformers' truncate_dim=k, the same first floats, unrenormalized
    k = enc.dim // 2
    np.testing.assert_allclose(
        enc.encode(TEXTS, dimensions=k), st.encode(TEXTS, truncate_dim=k), atol=1e-5
    )


def test_pooling_modes_are_recorded_in_order(stacks):
    src, artifact = stacks["cls+mean+max, Dense relu, Dense identity"]
    source = read_source(src)
    assert (source.pooling, source.dim) == ("cls+mean+max", 16)
    assert source.stack == ("Transformer", "Pooling", "Dense", "Dense", "Normalize")
    assert load_manifest(artifact).pooling == "cls+mean+max"


def test_prompts_as_sentence_transformers_applies_them(stacks):
    src, artifact = stacks["prompts, default prompt, dot product"]
    st = SentenceTransformer(str(src), device="cpu")
    enc = Encoder.load(artifact, device="cpu")
    manifest = load_manifest(artifact)
    assert manifest.prompts == PROMPTS and manifest.default_prompt_name == "classification"
    assert manifest.similarity_fn == "dot"

    def same(ours, ref):
        result = compare(ref, ours)
        assert result.min_cosine >= 0.99999 and result.max_abs_diff <= 1e-4, result

    same(enc.encode(TEXTS), st.encode(TEXTS))  # the default prompt
    for name in PROMPTS:
        same(enc.encode(TEXTS, prompt_name=name), st.encode(TEXTS, prompt_name=name))
    same(enc.encode(TEXTS, prompt="Represent: "), st.encode(TEXTS, prompt="Represent: "))
    same(enc.encode(TEXTS, prompt=""), st.encode(TEXTS, prompt=""))
    same(enc.encode_query(TEXTS), st.encode_query(TEXTS))
    same(enc.encode_document(TEXTS), st.encode_document(TEXTS))
    # the prompts matter: without them the vectors differ
    assert compare(st.encode(TEXTS), enc.encode(TEXTS, prompt="")).min_cosine < 0.999
    # the model's similarity function: dot products, as SentenceTransformer.similarity
    a, b = enc.encode(TEXTS[:3]), enc.encode(TEXTS[3:])
    np.testing.assert_allclose(enc.similarity(a, b), st.similarity(a, b).numpy(), rtol=1e-5)


def _with_module(src, tmp_path, kind, config=None):
    folder = shutil.copytree(src, tmp_path / "model")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append(
        {
            "idx": len(modules),
            "name": str(len(modules)),
            "path": f"{len(modules)}_{kind}",
            "type": f"sentence_transformers.models.{kind}",
        }
    )
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / f"{len(modules) - 1}_{kind}").mkdir()
    (folder / f"{len(modules) - 1}_{kind}" / "config.json").write_text(json.dumps(config or {}))
    return folder


def test_unsupported_modules_are_refused_before_the_build(stacks, tmp_path):
    src, _ = stacks["max"]
    for kind, match in (
        ("CNN", "module CNN is not supported"),
        ("Pooling", "2 Pooling modules, not one"),
        ("WeightedLayerPooling", "module WeightedLayerPooling is not supported"),
    ):
        folder = _with_module(src, tmp_path / kind, kind)
        with pytest.raises(ConfigError, match=match):
            read_source(folder)


def test_include_prompt_false_is_refused_naming_it(stacks, tmp_path):
    src, _ = stacks["max"]
    folder = shutil.copytree(src, tmp_path / "model")
    cfg_path = folder / "1_Pooling" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["include_prompt"] = False
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="include_prompt=false"):
        read_source(folder)
    assert not (tmp_path / "out").exists()


def test_normalized_only_when_normalize_is_the_last_module_that_changes_vectors(stacks, tmp_path):
    src, _ = stacks["mean_sqrt_len_tokens, Dense tanh"]  # Transformer, Pooling, Dense, Normalize
    assert read_source(src).normalize
    folder = shutil.copytree(src, tmp_path / "reordered")
    modules = json.loads((folder / "modules.json").read_text())
    modules[2], modules[3] = modules[3], modules[2]  # ... Normalize, then Dense
    (folder / "modules.json").write_text(json.dumps(modules))
    assert not read_source(folder).normalize
    modules[2], modules[3] = modules[3], modules[2]
    modules.append(
        {"idx": 4, "name": "4", "path": "4_Dropout", "type": "sentence_transformers.models.Dropout"}
    )
    (folder / "modules.json").write_text(json.dumps(modules))
    assert read_source(folder).normalize  # Dropout after Normalize changes nothing at inference
