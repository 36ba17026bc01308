"""A real model of another family: all-mpnet-base-v2 (MPNet, 110M parameters, from its five
pinned PyPI pieces), exported and compared with SentenceTransformer.encode on real text.

Its int8 and the speed of its variants are measured by `make bench-mpnet`
(bench/results/int8_smooth.md, bench/results/throughput_mpnet.md): quantizing 110M parameters
takes minutes on 2 cores, too long for every CI run.
"""

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from embedrt import Encoder, load_manifest
from embedrt.export import export_model, read_source
from embedrt.export.datasets import load_stsb
from embedrt.export.known_models import KNOWN_MODELS
from embedrt.export.parity import compare
from embedrt.export.source import resolve_source


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpnet") / "artifact"
    export_model("all-mpnet-base-v2", out, variants=())
    return out


def test_the_pieces_make_the_pinned_folder():
    name, folder = resolve_source("all-mpnet-base-v2")
    source = read_source(name)
    assert source.weights_sha256 == KNOWN_MODELS["all-mpnet-base-v2"].sha256
    assert (source.architecture, source.pooling, source.dim, source.max_seq_length) == (
        "mpnet",
        "mean",
        768,
        384,
    )
    assert source.stack == ("Transformer", "Pooling", "Normalize")
    assert (folder / "tokenizer.json").is_file()


def test_mpnet_matches_sentence_transformers_on_real_text(mpnet):
    manifest = load_manifest(mpnet)
    assert manifest.source["architecture"] == "mpnet" and manifest.pad_token_id == 1
    dev = load_stsb("dev")
    texts = list(dict.fromkeys(dev.first))[:300] + ["", "word " * 500]  # empty and past 384
    st = SentenceTransformer(str(resolve_source("all-mpnet-base-v2")[1]), device="cpu")
    ref = st.encode(texts, batch_size=32)
    ours = Encoder.load(mpnet, device="cpu").encode(texts, batch_size=32)
    result = compare(ref, ours)
    assert result.min_cosine >= 0.99999 and result.max_abs_diff <= 1e-4, result
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
