"""model_opt.onnx: ONNX Runtime's BERT optimizer, with the fused-operator counts checked.

An optimizer that silently fused nothing would ship a slower graph under a faster name, so the
export asserts one Attention and one GELU fusion per layer and two residual layer norms per
layer: SkipLayerNormalizations, or, with skip_layer_norm=False, the LayerNormalizations left
for ONNX Runtime to fuse at load where its fused kernel is fast (the embeddings' own
LayerNormalization has no skip input and is not counted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from embedrt.errors import ConfigError


@dataclass(frozen=True)
class Geometry:
    """What the optimizer must be told about the transformer (it cannot always infer it)."""

    layers: int
    heads: int
    hidden: int

    @classmethod
    def from_config(cls, config_path: Path) -> Geometry:
        cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
        try:
            return cls(
                int(cfg["num_hidden_layers"]),
                int(cfg["num_attention_heads"]),
                int(cfg["hidden_size"]),
            )
        except KeyError as e:
            raise ConfigError(f"{config_path}: no {e} (need a BERT-like config)") from None


def optimize(
    src: Path,
    dst: Path,
    geometry: Geometry,
    *,
    attention: bool = True,
    embed_layer_norm: bool = True,
    skip_layer_norm: bool = True,
) -> dict[str, int]:
    """Fuse src into dst; returns the non-zero fused-operator counts, checked against geometry."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_attention = attention
    options.enable_embed_layer_norm = embed_layer_norm
    options.enable_skip_layer_norm = skip_layer_norm
    model = optimize_model(
        str(src),
        model_type="bert",
        num_heads=geometry.heads,
        hidden_size=geometry.hidden,
        optimization_options=options,
        opt_level=0,  # 0: our fusions only; ORT fuses the rest at load
    )
    counts = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    check_fusions(counts, geometry, attention=attention, skip_layer_norm=skip_layer_norm)
    model.save_model_to_file(str(dst))
    return counts


def check_fusions(
    counts: dict[str, int], geometry: Geometry, *, attention: bool, skip_layer_norm: bool = True
) -> None:
    """ConfigError naming what is missing when the optimizer fused less than the model has."""
    layers = geometry.layers
    gelu = sum(counts.get(k, 0) for k in ("BiasGelu", "FastGelu", "Gelu", "GemmFastGelu"))
    norm = "SkipLayerNormalization" if skip_layer_norm else "LayerNormalization"
    expected = {
        "GELU fusions": (gelu, layers),
        norm: (counts.get(norm, 0), 2 * layers),  # after attention and after the FFN
    }
    if attention:
        expected["Attention"] = (
            counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0),
            layers,
        )
    wrong = {k: v for k, v in expected.items() if v[0] < v[1]}
    if wrong:
        detail = ", ".join(f"{k} {got} < {want}" for k, (got, want) in wrong.items())
        raise ConfigError(
            f"ONNX Runtime's optimizer fused less than a {layers}-layer BERT has ({detail}; "
            f"all counts: {counts}); refusing to write an unoptimized 'optimized' variant"
        )
