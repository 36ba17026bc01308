"""The sentence-transformers folder an export starts from: its module stack, read from files.

Two layouts exist. Before sentence-transformers 5.7: modules.json names
`sentence_transformers.models.<Class>`, sentence_bert_config.json holds max_seq_length and
do_lower_case, 1_Pooling/config.json has boolean `pooling_mode_*_tokens` keys. From 5.7 on:
modules.json names e.g. `sentence_transformers.base.modules.transformer.Transformer`,
max_seq_length moves to tokenizer_config.json (model_max_length), the pooling config has a
string `pooling_mode`, and Normalize gets a 2_Normalize folder. Both are read here.

The stack exported is Transformer -> Pooling (any of sentence-transformers' modes, one or
several) with Dense, LayerNorm, Normalize and Dropout modules before or after the pooling: the
graph runs sentence-transformers' own modules (graph.py). Anything else is refused here, before
the build, naming the module: never exported wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedrt.errors import ConfigError, ModelLoadError
from embedrt.manifest import POOLINGS, SIMILARITY_FNS, sha256_file

from .known_models import known_folder

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_OLD_POOLING_KEYS = {  # pre-5.7 boolean keys, in sentence-transformers' concatenation order
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Modules the graph runs as sentence-transformers does (eval mode: Dropout is the identity).
_HEAD_MODULES = ("Pooling", "Dense", "LayerNorm", "Normalize", "Dropout")


@dataclass(frozen=True)
class SourceModel:
    """What the export needs to know about a sentence-transformers folder."""

    name: str
    path: Path
    transformer_path: Path
    layout: str  # "pre-5.7" or "5.7+"
    max_seq_length: int
    do_lower_case: bool
    pooling: str  # one mode, or several joined by "+" (concatenated in this order)
    dim: int  # of the output: the pooled width, or the last Dense's out_features
    normalize: bool
    weights_file: str
    weights_sha256: str
    modules: tuple[str, ...]
    architecture: str = ""  # the transformer's config.json model_type (bert, mpnet, qwen3, ...)
    stack: tuple[str, ...] = ()  # the module classes, e.g. Transformer, Pooling, Dense, Normalize
    prompts: tuple[tuple[str, str], ...] = ()  # (name, text) as config_sentence_transformers has
    default_prompt_name: str | None = None
    similarity_fn: str = "cosine"


def resolve_source(src: str | Path) -> tuple[str, Path]:
    """(name, folder) of a model given as a path or a KNOWN_MODELS name, with weights checked."""
    path = Path(src)
    if path.exists():
        return path.resolve().name, path
    return str(src), known_folder(str(src))


def read_source(src: str | Path) -> SourceModel:
    """Read and validate a sentence-transformers folder (either layout)."""
    name, path = resolve_source(src)
    modules = _read_json(path / "modules.json")
    if (
        not isinstance(modules, list)
        or not modules
        or not all(isinstance(m, dict) for m in modules)
    ):
        raise ModelLoadError(f"{path / 'modules.json'} must list the model's modules")
    kinds = tuple(_module_class(m.get("type", "")) for m in modules)
    _check_stack(path, kinds)
    layout = "5.7+" if any(m["type"].count(".") > 2 for m in modules) else "pre-5.7"
    tpath = path / modules[0].get("path", "")
    max_len, lower = _read_transformer_config(tpath)
    model_cfg = _model_config(tpath)
    modes, dim = _read_head(path, modules, kinds, model_cfg)
    prompts, default_prompt, similarity_fn = _read_st_config(path)
    weights = next((tpath / w for w in _WEIGHT_FILES if (tpath / w).is_file()), None)
    if weights is None:
        raise ModelLoadError(f"no weights ({' or '.join(_WEIGHT_FILES)}) in {tpath}")
    return SourceModel(
        name=name,
        path=path,
        transformer_path=tpath,
        layout=layout,
        max_seq_length=max_len,
        do_lower_case=lower,
        pooling="+".join(modes),
        dim=dim,
        # unit vectors only when a Normalize is the last module that changes them
        normalize=[k for k in kinds if k != "Dropout"][-1] == "Normalize",
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
        modules=tuple(m["type"] for m in modules),
        architecture=str(model_cfg.get("model_type", "")),
        stack=kinds,
        prompts=prompts,
        default_prompt_name=default_prompt,
        similarity_fn=similarity_fn,
    )


def _check_stack(path: Path, kinds: tuple[str, ...]) -> None:
    """ConfigError unless the stack is Transformer, then exactly one Pooling among modules the
    graph runs as sentence-transformers does."""
    stack = " -> ".join(kinds)
    if kinds[0] != "Transformer":
        raise ConfigError(
            f"module stack {stack} of {path} cannot be exported: embedrt exports models whose "
            "first module is a (Hugging Face) Transformer"
        )
    unknown = [k for k in kinds[1:] if k not in _HEAD_MODULES]
    if unknown or kinds.count("Pooling") != 1:
        why = (
            f"module {unknown[0]} is not supported"
            if unknown
            else f"it has {kinds.count('Pooling')} Pooling modules, not one"
        )
        raise ConfigError(
            f"module stack {stack} of {path} cannot be exported: {why}. embedrt fuses "
            f"Transformer -> Pooling with {', '.join(_HEAD_MODULES[1:])} modules into one graph "
            "and refuses other stacks rather than export them wrong; encode this model with "
            "sentence-transformers, or file an issue naming the module"
        )


def _module_class(type_name: str) -> str:
    if not type_name.startswith("sentence_transformers."):
        return type_name or "?"
    return type_name.rsplit(".", 1)[-1]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: not a sentence-transformers folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path} is not valid JSON: {e}") from None


def _model_config(tpath: Path) -> dict[str, Any]:
    cfg = _read_json(tpath / "config.json")
    if not isinstance(cfg, dict):
        raise ModelLoadError(f"{tpath / 'config.json'} must be a JSON object")
    return cfg


def _read_head(
    path: Path, modules: list[dict], kinds: tuple[str, ...], model_cfg: dict[str, Any]
) -> tuple[list[str], int]:
    """The pooling modes and the output dimension, following the width through the stack:
    the transformer's hidden size, a Dense before the pooling, the pooling's modes side by
    side, each Dense after it."""
    width = model_cfg.get("hidden_size", model_cfg.get("dim", model_cfg.get("d_model")))
    modes: list[str] = []
    for module, kind in zip(modules[1:], kinds[1:], strict=True):
        folder = path / module.get("path", "")
        if kind == "Pooling":
            modes, width = _read_pooling(folder)
        elif kind == "Dense":
            cfg = _read_json(folder / "config.json")
            width = cfg.get("out_features")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ModelLoadError(f"{path}: cannot tell the embedding dimension ({width!r})")
    return modes, width


def _read_pooling(folder: Path) -> tuple[list[str], int]:
    """The pooling's modes (in sentence-transformers' order) and its output width."""
    cfg = _read_json(folder / "config.json")
    if "pooling_mode" in cfg:  # 5.7+
        modes = cfg["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
        width = cfg.get("embedding_dimension", cfg.get("word_embedding_dimension"))
    else:  # pre-5.7: one boolean per mode, concatenated in sentence-transformers' order
        modes = [mode for key, mode in _OLD_POOLING_KEYS.items() if cfg.get(key)]
        width = cfg.get("word_embedding_dimension")
    if cfg.get("include_prompt", True) is False:
        raise ConfigError(
            f"{folder}: pooling with include_prompt=false (the prompt's tokens left out of the "
            "pooling) is not supported yet: the graph pools every token. Export refused before "
            "the build rather than pool differently from sentence-transformers"
        )
    unknown = [m for m in modes if m not in POOLINGS]
    if not modes or unknown:
        raise ConfigError(
            f"{folder}: pooling {'+'.join(modes) or 'none'} is not supported; embedrt fuses "
            f"sentence-transformers' modes {', '.join(POOLINGS)}, one or several"
        )
    if not isinstance(width, int) or width < 1:
        raise ModelLoadError(f"{folder / 'config.json'}: no embedding dimension")
    return modes, width * len(modes)


# Families whose position ids start after the padding id (fairseq's RoBERTa and its kin, and
# MPNet): pad_token_id + 1 of their max_position_embeddings (514) are no text's positions, so a
# text takes 512 tokens at most.
OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert", "mpnet"})


def _read_transformer_config(tpath: Path) -> tuple[int, bool]:
    """max_seq_length and do_lower_case, from whichever layout holds them."""
    st = _read_json(tpath / "sentence_bert_config.json")
    if st.get("transformer_task", "feature-extraction") != "feature-extraction":
        raise ConfigError(f"{tpath}: transformer_task {st['transformer_task']!r} is not supported")
    model_cfg = _read_json(tpath / "config.json")
    positions = int(model_cfg.get("max_position_embeddings", 512))
    if model_cfg.get("model_type") in OFFSET_POSITIONS:
        positions -= int(model_cfg.get("pad_token_id", 1)) + 1
    max_len = st.get("max_seq_length")
    if max_len is None:  # 5.7+: moved to tokenizer_config.json
        tok_cfg_path = tpath / "tokenizer_config.json"
        tok_cfg = _read_json(tok_cfg_path) if tok_cfg_path.is_file() else {}
        max_len = tok_cfg.get("model_max_length", positions)
    if not isinstance(max_len, int) or max_len < 2:
        raise ModelLoadError(f"{tpath}: max_seq_length {max_len!r} is not a usable length")
    return min(max_len, positions), bool(st.get("do_lower_case", False))


def _read_st_config(
    path: Path,
) -> tuple[tuple[tuple[str, str], ...], str | None, str]:
    """The prompts, default prompt name and similarity function the folder's
    config_sentence_transformers.json sets (none, None and cosine without one)."""
    cfg_path = path / "config_sentence_transformers.json"
    cfg = _read_json(cfg_path) if cfg_path.is_file() else {}
    prompts = cfg.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, type(None))) for k, v in prompts.items()
    ):
        raise ModelLoadError(f"{cfg_path}: prompts must map names to prompt texts")
    clean = tuple((k, v or "") for k, v in prompts.items())
    default = cfg.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise ModelLoadError(f"{cfg_path}: default_prompt_name {default!r} is not a prompt")
    similarity_fn = cfg.get("similarity_fn_name") or "cosine"
    if similarity_fn not in SIMILARITY_FNS:
        raise ConfigError(
            f"{cfg_path}: similarity_fn_name {similarity_fn!r} is not one of "
            f"{', '.join(SIMILARITY_FNS)}"
        )
    return clean, default, similarity_fn
