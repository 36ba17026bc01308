"""model_opt.onnx: ONNX Runtime's transformer optimizer, told the model's family and geometry.

The optimizer fuses each layer's attention into one Attention node only where it recognizes the
attention's pattern: the BERT family (BERT, RoBERTa, XLM-RoBERTa, ELECTRA, DistilBERT) fuses
every layer, and there an optimizer that fused less is a bug, not a model: the export stops
(check_fusions). MPNet (relative position bias), DeBERTa (disentangled attention), ModernBERT
and the Qwen decoders (rotary embeddings) fuse no attention in ONNX Runtime today; whatever else
fuses there (GELU, LayerNormalization, RMSNorm) ONNX Runtime fuses at load anyway, so for them
the optimized file is kept only when attention fused (attention_fused), and the manifest says
what fused and why not more (shortfall).

With skip_layer_norm=False the residual LayerNormalizations are left for ONNX Runtime to fuse at
load where its kernel is fast (the embeddings' own LayerNormalization has no skip input and is
not counted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from embedrt.errors import ConfigError

# config.json model_type of the families whose every layer ONNX Runtime's BERT optimizer fuses
# (measured on tiny models of each in tests/export/test_optimize_families.py).
FULLY_FUSED = ("bert", "roberta", "xlm-roberta", "electra", "distilbert")
# ONNX Runtime's optimizer model_type per family (onnxruntime.transformers.optimizer
# MODEL_TYPES): "qwen3" is its decoder optimizer (RoPE, GQA, RMSNorm); every encoder takes "bert".
OPTIMIZER_TYPES = {"qwen2": "qwen3", "qwen3": "qwen3"}
# Config keys (layers, heads, hidden) where a family does not use the BERT names, as its
# transformers config class's attribute_map says.
CONFIG_KEYS = {"distilbert": ("n_layers", "n_heads", "dim")}
_BERT_KEYS = ("num_hidden_layers", "num_attention_heads", "hidden_size")
ATTENTION_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention")
GELU_OPS = ("BiasGelu", "FastGelu", "Gelu", "GemmFastGelu")
# What in a family's attention ONNX Runtime's optimizer does not match, for the manifest and
# `embedrt info` (checked on tiny models of each: no attention fused).
WHY_NO_ATTENTION = {
    "mpnet": "its attention adds a relative position bias to the scores",
    "deberta-v2": "its disentangled attention adds content-to-position scores",
    "modernbert": "its attention applies rotary embeddings (and local windows)",
    "qwen2": "its causal attention applies rotary embeddings with grouped key/value heads",
    "qwen3": "its causal attention applies rotary embeddings with grouped key/value heads",
}


@dataclass(frozen=True)
class Geometry:
    """What the optimizer must be told about the transformer (it cannot always infer it).

    family: config.json's model_type; decides the optimizer's model_type and whether every
    layer must fuse.
    """

    layers: int
    heads: int
    hidden: int
    family: str = "bert"

    @classmethod
    def from_config(cls, config_path: Path) -> Geometry:
        cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
        family = str(cfg.get("model_type", ""))
        keys = CONFIG_KEYS.get(family, _BERT_KEYS)
        missing = [k for k in keys if k not in cfg]
        if missing:
            raise ConfigError(
                f"{config_path}: model_type {family!r} has no {', '.join(missing)}; the optimizer "
                f"needs the layer, head and hidden sizes (export with --variants int8 to skip it)"
            )
        return cls(int(cfg[keys[0]]), int(cfg[keys[1]]), int(cfg[keys[2]]), family)

    @property
    def fully_fused(self) -> bool:
        """True for the families whose every layer the optimizer is known to fuse."""
        return self.family in FULLY_FUSED

    @property
    def optimizer_type(self) -> str:
        return OPTIMIZER_TYPES.get(self.family, "bert")


def optimize(
    src: Path,
    dst: Path,
    geometry: Geometry,
    *,
    attention: bool = True,
    embed_layer_norm: bool = True,
    skip_layer_norm: bool = True,
) -> dict[str, int]:
    """Fuse src into dst; returns the non-zero fused-operator counts.

    For the BERT family the counts are checked against the geometry (ConfigError, nothing
    written, when less fused); other families' graphs are written with what fused.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(geometry.optimizer_type)
    options.enable_attention = attention
    options.enable_embed_layer_norm = embed_layer_norm and options.enable_embed_layer_norm
    options.enable_skip_layer_norm = skip_layer_norm
    model = optimize_model(
        str(src),
        model_type=geometry.optimizer_type,
        num_heads=geometry.heads,
        hidden_size=geometry.hidden,
        optimization_options=options,
        opt_level=0,  # 0: our fusions only; ORT fuses the rest at load
    )
    counts = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    if geometry.fully_fused:
        check_fusions(counts, geometry, attention=attention, skip_layer_norm=skip_layer_norm)
    model.save_model_to_file(str(dst))
    return counts


def attention_fused(counts: dict[str, int]) -> bool:
    """Whether any attention fused: the one fusion ONNX Runtime does not also make at load."""
    return any(counts.get(op, 0) for op in ATTENTION_OPS)


def shortfall(
    counts: dict[str, int], geometry: Geometry, *, attention: bool, skip_layer_norm: bool = True
) -> dict[str, tuple[int, int]]:
    """{fusion: (fused, a BERT's count)} for each fusion that fell short of a BERT's per layer:
    one attention and one GELU per layer, two residual layer norms per layer."""
    layers = geometry.layers
    norm = "SkipLayerNormalization" if skip_layer_norm else "LayerNormalization"
    norms = counts.get(norm, 0)
    if geometry.family in OPTIMIZER_TYPES:  # decoders normalize with RMSNorm
        norm = "SimplifiedLayerNormalization"
        norms = counts.get(norm, 0) + counts.get("SkipSimplifiedLayerNormalization", 0)
    expected = {
        "GELU fusions": (sum(counts.get(k, 0) for k in GELU_OPS), layers),
        norm: (norms, 2 * layers),  # after attention and after the FFN
    }
    if geometry.family in OPTIMIZER_TYPES:
        del expected["GELU fusions"]  # SwiGLU: no GELU to fuse
    if attention:
        expected["Attention"] = (sum(counts.get(k, 0) for k in ATTENTION_OPS), layers)
    return {k: v for k, v in expected.items() if v[0] < v[1]}


def check_fusions(
    counts: dict[str, int], geometry: Geometry, *, attention: bool, skip_layer_norm: bool = True
) -> None:
    """ConfigError naming what is missing when the optimizer fused less than the model has."""
    wrong = shortfall(counts, geometry, attention=attention, skip_layer_norm=skip_layer_norm)
    if wrong:
        detail = ", ".join(f"{k} {got} < {want}" for k, (got, want) in wrong.items())
        raise ConfigError(
            f"ONNX Runtime's optimizer fused less than a {geometry.layers}-layer BERT has "
            f"({detail}; all counts: {counts}); refusing to write an unoptimized 'optimized' "
            f"variant of a {geometry.family} model, which it fuses fully"
        )


def why_not_more(counts: dict[str, int], geometry: Geometry, *, skip_layer_norm: bool) -> str:
    """For the manifest: what fell short of a full fusion and why ('' when nothing did)."""
    wrong = shortfall(counts, geometry, attention=True, skip_layer_norm=skip_layer_norm)
    if not wrong:
        return ""
    detail = ", ".join(f"{k} {got} of {want}" for k, (got, want) in wrong.items())
    family = geometry.family or "this"
    reason = WHY_NO_ATTENTION.get(geometry.family, "its graph matches none of its patterns")
    return (
        f"fused {detail} (model_type {geometry.optimizer_type!r} for a {family} model): "
        f"ONNX Runtime's optimizer fuses no attention here; {reason}"
    )
