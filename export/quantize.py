"""model_int8.onnx: int8 weights whose output for a text does not depend on its batch.

ONNX Runtime's dynamic quantization (quantize_dynamic) computes ONE activation scale over the
whole padded batch, so a text's vector changes with the company it is batched with (measured on
MiniLM: min cosine to fp32 0.86-0.97, alone-vs-batched 0.977-0.984). Static quantization fixes
the scales but calibrated ranges hurt (min cosine 0.84 with every MatMul, 0.98 without the FFN
outputs). The scheme used here is MatMulNBits with 8-bit weights in blocks of 32 along K and
accuracy_level 4: MLAS quantizes activations per row and per block at run time (int8 dot
products, VNNI), so each row is quantized on its own -> batch-invariant by construction, with
min cosine to fp32 0.998 on STS-B dev. bench/int8.py measures all of these side by side.
After quantizing, the BERT optimizer fuses SkipLayerNormalization and GELU (attention cannot be
fused around MatMulNBits and stays as ONNX ops, which ONNX Runtime runs well on the CPU).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import onnx

from .optimize import Geometry, optimize

BLOCK_SIZE = 32  # weights per quantization block along K; 128 measured less batch-invariant
ACCURACY_LEVEL = 4  # int8 compute: activations quantized per row-block at run time


def quantize_int8(src: Path, dst: Path, geometry: Geometry) -> dict[str, int]:
    """Quantize the plain fp32 graph src into dst; returns fused-operator counts."""
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(
        block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=ACCURACY_LEVEL, bits=8
    )
    # The quantizer logs every MatMul it skips at INFO; keep the export's output readable.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), algo_config=config)
    quantizer.process()
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        quantized = Path(tmp) / "quantized.onnx"
        quantizer.model.save_model_to_file(str(quantized))
        counts = optimize(quantized, dst, geometry, attention=False, embed_layer_norm=False)
    graph = onnx.load(str(dst), load_external_data=False).graph
    counts["MatMulNBits"] = sum(n.op_type == "MatMulNBits" for n in graph.node)
    return counts
