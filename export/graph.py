"""torch -> ONNX: the transformer, the pooling and the normalization as ONE graph.

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
from transformers import AutoModel

from .source import SourceModel

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "sentence_embedding"


class SentenceEmbedding(torch.nn.Module):
    """transformer -> pooling -> (L2 normalize), as sentence-transformers computes them."""

    def __init__(self, transformer: torch.nn.Module, pooling: str, normalize: bool):
        super().__init__()
        self.transformer = transformer
        self.pooling = pooling
        self.normalize = normalize
        self.token_types = "token_type_ids" in inspect.signature(transformer.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"token_type_ids": torch.zeros_like(input_ids)} if self.token_types else {}
        tokens = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, **extra
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        if self.pooling == "mean":
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        elif self.pooling == "cls":
            pooled = tokens[:, 0]
        elif self.pooling == "max":
            pooled = (tokens + (mask - 1.0) * 1e9).max(1).values
        else:
            raise ValueError(f"pooling {self.pooling!r}")
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled


def build_module(source: SourceModel) -> SentenceEmbedding:
    transformer = AutoModel.from_pretrained(
        str(source.transformer_path), attn_implementation="eager"
    )
    return SentenceEmbedding(transformer.eval(), source.pooling, source.normalize).eval()


def export_onnx(source: SourceModel, out_path: Path, opset: int = 17) -> None:
    """Write the fused graph to out_path (one file; MiniLM is 90 MB, far below protobuf's 2 GB)."""
    module = build_module(source)
    # Two rows, one padded, so the export traces the masking path with dynamic shapes.
    ids = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0, 0]])
    ids = ids.clamp(max=module.transformer.config.vocab_size - 1)
    mask = (torch.arange(ids.shape[1])[None, :] < torch.tensor([[7], [3]])).long()
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
