"""model_int8.onnx: int8 whose output for a text does not depend on its batch company.

ONNX Runtime's dynamic quantization computes ONE activation scale over the whole padded batch,
so a text's vector changes with what it is batched with (MiniLM, STS-B dev: alone vs batched min
cosine 0.980-0.984). Static quantization fixes every activation scale at export, calibrated on
real text, so each row is computed the same way whatever shares its batch: batch-invariant by
construction. Measured side by side (bench/results/int8.md, idle 2-core Zen 5, batch 32): static
QOperator int8 on every linear layer runs at 1.96x fp32 and 0.92x of the fastest dynamic
scheme, keeps STS-B dev Spearman within 0.001 of fp32, but moves single vectors more (min cosine
to fp32 0.84 on STS-B dev); keeping the FFN outputs in fp32 raises that to 0.98 at 1.44x fp32;
MatMulNBits 8-bit (per-row activation blocks) keeps 0.998 at 1.10x fp32.
So: static, per-channel weights, MinMax ranges from 512 STS-B train sentences, all linear layers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

from .datasets import load_stsb

CALIBRATION_TEXTS = 512  # STS-B train sentences; MinMax over them sets every activation range
CALIBRATION_BATCH = 32


def linear_matmuls(graph: onnx.GraphProto) -> list[str]:
    """MatMul nodes with a weight initializer: the linear layers (not attention's Q.K, P.V)."""
    weights = {i.name for i in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "MatMul" and any(x in weights for x in n.input)]


def quantize_int8(src: Path, dst: Path, tokenizer_path: Path, max_length: int) -> dict[str, int]:
    """Statically quantize the plain fp32 graph src into dst; returns quantized-operator counts.

    Raises ModelLoadError when STS-B (the calibration text) is not installed.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )

    from embedrt.tokenizer import TextTokenizer, pad_rows

    train = load_stsb("train")
    texts = list(dict.fromkeys(train.first))[:CALIBRATION_TEXTS]
    rows = TextTokenizer.load(tokenizer_path, max_length).tokenize(texts)

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.start = 0

        def get_next(self) -> dict | None:
            if self.start >= len(rows):
                return None
            batch = rows[self.start : self.start + CALIBRATION_BATCH]
            self.start += CALIBRATION_BATCH
            ids, mask = pad_rows(batch, max(map(len, batch)), 0)
            return {"input_ids": ids, "attention_mask": mask}

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    nodes = linear_matmuls(onnx.load(str(src), load_external_data=False).graph)
    quantize_static(
        str(src), str(dst), Calibration(), quant_format=QuantFormat.QOperator, per_channel=True,
        reduce_range=False,  # VNNI has no u8s8 saturation issue (measured no gain from it)
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
        calibrate_method=CalibrationMethod.MinMax,
    )
    graph = onnx.load(str(dst), load_external_data=False).graph
    return {"QLinearMatMul": sum(n.op_type == "QLinearMatMul" for n in graph.node),
            "linear_layers": len(nodes)}
