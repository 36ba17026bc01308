"""Tiny random BERTs in sentence-transformers format (both folder layouts), built offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from fixtures.st_zoo import TORCH_ONNX_WARNINGS  # noqa: E402
from fixtures.tiny_model import build_tokenizer  # noqa: E402


def pytest_configure(config):
    for line in TORCH_ONNX_WARNINGS:
        config.addinivalue_line("filterwarnings", line)


OLD_TYPES = {
    "Transformer": "sentence_transformers.models.Transformer",
    "Pooling": "sentence_transformers.models.Pooling",
    "Normalize": "sentence_transformers.models.Normalize",
    "Dense": "sentence_transformers.models.Dense",
}


def build_st_model(
    folder: Path,
    pooling: str = "mean",
    normalize: bool = True,
    max_seq_length: int = 24,
    seed: int = 0,
) -> Path:
    """Save a tiny random BERT with sentence-transformers itself (the 5.7+ layout)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    hf = folder.parent / f"{folder.name}-hf"
    tok = build_tokenizer()
    tok.no_truncation()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=512,
    )
    fast.save_pretrained(hf)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(hf)
    transformer = models.Transformer(str(hf), max_seq_length=max_seq_length)
    mods = [transformer, models.Pooling(32, pooling_mode=pooling)]
    if normalize:
        mods.append(models.Normalize())
    SentenceTransformer(modules=mods, device="cpu").save(str(folder))
    shutil.rmtree(hf)
    return folder


def to_old_layout(folder: Path, max_seq_length: int, pooling: str, normalize: bool) -> Path:
    """Rewrite a 5.7+ folder's configs the way sentence-transformers < 5.7 wrote them."""
    kinds = ["Transformer", "Pooling"] + (["Normalize"] if normalize else [])
    modules = [
        {
            "idx": i,
            "name": str(i),
            "path": "" if k == "Transformer" else f"{i}_{k}",
            "type": OLD_TYPES[k],
        }
        for i, k in enumerate(kinds)
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    pool = {
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pool))
    shutil.rmtree(folder / "2_Normalize", ignore_errors=True)
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text())
    tok_cfg["model_max_length"] = 512  # old layouts kept the tokenizer's own limit here
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return folder


def exported(root: Path, builds: dict) -> dict[str, tuple[Path, Path]]:
    """name -> (source folder, fp32 artifact) for each name -> build(folder) -> folder, each
    built and exported (no variants) under root."""
    from embedrt.export import export_model

    out = {}
    for i, (name, build) in enumerate(builds.items()):
        src = build(root / f"m{i}")
        export_model(src, root / f"m{i}-artifact", variants=())
        out[name] = (src, root / f"m{i}-artifact")
    return out


@pytest.fixture(scope="session")
def st_mean(tmp_path_factory):
    return build_st_model(tmp_path_factory.mktemp("st") / "mean", "mean", True)
