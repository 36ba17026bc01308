"""torch -> ONNX: the transformer and the modules after it (pooling, Dense, normalization) as
ONE graph.

Inputs input_ids and attention_mask (int64 [batch, seq], right-padded), output
sentence_embedding (float32 [batch, dim]); token_type_ids is folded in as zeros.

Exported with torch.onnx's TorchScript exporter (dynamo=False) and eager attention: that graph
is what ONNX Runtime's BERT optimizer recognizes (optimize.py checks its fusions per layer on
every export), while the dynamo exporter's and SDPA's graphs fused no attention.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from embedrt.errors import ConfigError, ModelLoadError

from .source import SourceModel

INPUTS = ("input_ids", "attention_mask")
MAX_GRAPH_BYTES = (1 << 31) - (64 << 20)  # protobuf's 2 GiB, less room for the graph itself
OUTPUT = "sentence_embedding"


class SentenceEmbedding(torch.nn.Module):
    """The transformer, then sentence-transformers' own modules after it (Pooling in any mode,
    Dense, LayerNorm, Normalize), so the graph computes what SentenceTransformer.encode does."""

    def __init__(self, transformer: torch.nn.Module, head: list[torch.nn.Module]):
        super().__init__()
        self.transformer = transformer
        self.head = torch.nn.ModuleList(head)
        self.token_types = "token_type_ids" in inspect.signature(transformer.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"token_type_ids": torch.zeros_like(input_ids)} if self.token_types else {}
        tokens = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, **extra
        ).last_hidden_state
        features = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_embeddings": tokens,
            # what sentence-transformers' cls pooling finds (the first unmasked token) is the
            # first token here: the runtime pads on the right. Given, the pooling skips its
            # gather-and-squeeze, which traces to an If node fp16 conversion cannot type.
            "cls_token_embeddings": tokens[:, 0],
        }
        for module in self.head:
            features = module(features)
        return features["sentence_embedding"]


def build_module(source: SourceModel) -> SentenceEmbedding:
    """The folder loaded by sentence-transformers itself, with eager attention (the graph ONNX
    Runtime's optimizer recognizes), its transformer and its later modules taken as they are."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(
        str(source.path), device="cpu", model_kwargs={"attn_implementation": "eager"}
    )
    modules = list(st)
    transformer = getattr(modules[0], "model", None) or modules[0].auto_model
    return SentenceEmbedding(transformer.eval(), modules[1:]).eval()


def export_onnx(source: SourceModel, out_path: Path, opset: int = 17) -> None:
    """Write the fused graph to out_path (one file; MiniLM is 90 MB, far below protobuf's 2 GB)."""
    module = build_module(source)
    weight_bytes = sum(p.numel() * 4 for p in module.parameters())
    if weight_bytes >= MAX_GRAPH_BYTES:
        raise ConfigError(
            f"{source.path}: {weight_bytes / 1e9:.1f} GB of fp32 weights; one ONNX file holds "
            f"less than 2 GB (protobuf's limit) and embedrt does not write external data yet"
        )
    # Two rows, one padded, so the export traces the masking path with dynamic shapes.
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0, 0]])
    ids = ids.clamp(max=module.transformer.config.vocab_size - 1)
    mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor([[7], [3]])).long()
    with torch.no_grad():
        width = module(ids, mask).shape[-1]
    if width != source.dim:
        raise ModelLoadError(
            f"{source.path}: the module stack outputs {width} floats, its configs say "
            f"{source.dim}; refusing to export a model whose files disagree"
        )
    axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        OUTPUT: {0: "batch"},
    }
    # The tracer's warnings about Python control flow reach the caller (progress.py's
    # quiet_libraries hides them): the parity check, not the tracer, says the graph is right.
    with torch.no_grad():
        torch.onnx.export(
            module,
            (ids, mask),
            str(out_path),
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
