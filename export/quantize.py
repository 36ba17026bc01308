"""model_int8.onnx: int8 whose output for a text does not depend on its batch company.

ONNX Runtime's dynamic quantization computes ONE activation scale over the whole padded batch,
so a text's vector changes with what it is batched with (the dynamic schemes' batch invariance
in bench/results/int8.md). Static quantization fixes every activation scale at export,
calibrated on real text, so each row is computed the same way whatever shares its batch:
batch-invariant by construction. ONNX Runtime's static QOperator format then requantizes each
linear layer's output to uint8 (QLinearMatMul) only to dequantize it for the fp32 bias,
LayerNorm or GELU that follows: that rounding moved single vectors far from fp32 (the
QLinearMatMul row of bench/results/int8.md) and the extra Dequantize nodes cost time. So each
QLinearMatMul -> DequantizeLinear pair is replaced by ONNX Runtime's MatMulIntegerToFloat
(uint8 activations at the calibrated static scale, int8 per-channel weights, int32
accumulation, fp32 output): still batch-invariant, and both faster and closer to fp32
(bench/results/int8.md has every scheme side by side).
Before that, SmoothQuant (smooth.py) moves each linear layer's activation outliers into its
weights, without which a model with large outlier channels (MPNet) lost most of its precision.
So: SmoothQuant alpha 0.7, static, per-channel weights, MinMax ranges from the calibration
texts (512 STS-B train sentences shipped with embedrt, or the user's --calibration file:
datasets.py), all linear layers, fp32 outputs. Then each BERT-style attention becomes one ONNX
Attention node where that gives the same vectors (attention.py), and last the word-embedding
table (most of a small model's bytes) is stored as int8 rows with a scale each
(quantize_tables).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from .attention import attention_ops
from .datasets import calibration_texts
from .onnx_edit import consumers, drop_nodes, prune
from .smooth import SMOOTH_ALPHA, channel_absmax, smooth

if TYPE_CHECKING:
    from onnxruntime.quantization import CalibrationDataReader

CALIBRATION_BATCH = 32  # rows per calibration run, and at most
CALIBRATION_TOKENS = 8192  # padded tokens per run: long user texts must not blow up memory


def linear_matmuls(graph: onnx.GraphProto) -> list[str]:
    """MatMul nodes with a weight initializer: the linear layers (not attention's Q.K, P.V)."""
    weights = {i.name for i in graph.initializer}
    return [
        n.name for n in graph.node if n.op_type == "MatMul" and any(x in weights for x in n.input)
    ]


def quantize_int8(
    src: Path,
    dst: Path,
    tokenizer_path: Path,
    max_length: int,
    float_outputs: bool = True,
    texts: tuple[str, ...] | None = None,
    *,
    pad_id: int = 0,
    alpha: float | None = SMOOTH_ALPHA,
    attention: bool = True,
) -> dict[str, int]:
    """Statically quantize the plain fp32 graph src into dst; returns quantized-operator counts.
    texts: the calibration texts (default: the shipped ones, datasets.calibration_texts).
    float_outputs=False keeps ONNX Runtime's requantized uint8 outputs (for the benchmark).
    pad_id: the tokenizer's pad token (RoBERTa-like models give pads positions by it).
    alpha: SmoothQuant's migration strength (smooth.py); None quantizes unsmoothed.
    attention: False keeps torch's attention nodes (attention.py; for the benchmark).
    """
    from onnxruntime.quantization import CalibrationDataReader

    from embedrt.tokenizer import TextTokenizer, pad_rows

    if texts is None:
        texts = calibration_texts()[0]
    # sorted by length, so a batch pads little: MinMax would count the pads' activations too
    rows = sorted(TextTokenizer.load(tokenizer_path, max_length).tokenize(list(texts)), key=len)

    spans = _spans([len(r) for r in rows])

    class Calibration(CalibrationDataReader):
        """The calibration runs, one span of the sorted rows each."""

        def __init__(self) -> None:
            self.todo = iter(spans)

        def get_next(self) -> dict | None:
            span = next(self.todo, None)
            if span is None:
                return None
            batch = rows[span[0] : span[1]]
            ids, mask = pad_rows(batch, max(map(len, batch)), pad_id)
            return {"input_ids": ids, "attention_mask": mask}

    def batches() -> Iterator[dict]:
        return iter(Calibration().get_next, None)

    def checks() -> Iterator[dict]:
        """The calibration runs, then rows the calibration texts lack: one of max_length
        tokens alone and padded beside a short one, and single rows (attention_ops)."""
        yield from batches()
        longest = max(rows, key=len)
        full = (longest * (max_length // max(len(longest), 1) + 1))[:max_length]
        for batch in ([full], [rows[0], full], [rows[0]], [rows[len(rows) // 2]]):
            ids, mask = pad_rows(batch, max(map(len, batch)), pad_id)
            yield {"input_ids": ids, "attention_mask": mask}

    model = onnx.load(str(src))
    nodes = linear_matmuls(model.graph)
    smoothed = 0
    smoothed_path = dst.with_name(f".smoothed-{dst.name}")
    try:
        if alpha is not None:
            smoothed = smooth(model, channel_absmax(model, batches()), alpha)
            onnx.save(model, str(smoothed_path))
            src = smoothed_path
        del model
        _quantize(str(src), str(dst), Calibration(), nodes)
    finally:
        smoothed_path.unlink(missing_ok=True)
    counts = {"linear_layers": len(nodes), "smoothed_inputs": smoothed}
    if not float_outputs:
        graph = onnx.load(str(dst), load_external_data=False).graph
        return counts | {"QLinearMatMul": sum(n.op_type == "QLinearMatMul" for n in graph.node)}
    counts |= dequantize_outputs(dst)
    counts |= attention_ops(dst, checks()) if attention else {"attention": 0}
    return counts | quantize_tables(dst)


def _spans(lengths: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each calibration run over rows sorted by length: at most
    CALIBRATION_BATCH rows and CALIBRATION_TOKENS padded tokens (one longer row runs alone)."""
    spans, start = [], 0
    while start < len(lengths):
        end = start + 1
        while (
            end < len(lengths)
            and end - start < CALIBRATION_BATCH
            and (end + 1 - start) * lengths[end] <= CALIBRATION_TOKENS
        ):
            end += 1
        spans.append((start, end))
        start = end
    return spans


def _quantize(src: str, dst: str, calibration: CalibrationDataReader, nodes: list[str]) -> None:
    """ONNX Runtime's static quantization as this module uses it (see the docstring)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        src,
        dst,
        calibration,
        quant_format=QuantFormat.QOperator,
        per_channel=True,
        reduce_range=False,  # VNNI has no u8s8 saturation issue (bench/results/int8.md: no gain)
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=nodes,
        calibrate_method=CalibrationMethod.MinMax,
    )


def _absorb_bias(graph: onnx.GraphProto) -> int:
    """Fold the bias Add that follows a MatMulIntegerToFloat into its optional bias input: one
    node and one pass over the layer's output instead of two (int8's speed:
    bench/results/int8.md)."""
    shapes = {i.name: list(i.dims) for i in graph.initializer}
    for node in graph.node:  # torch.onnx shares equal tensors (zero biases) through Identity nodes
        if node.op_type == "Identity" and node.input[0] in shapes:
            shapes[node.output[0]] = shapes[node.input[0]]
    readers = consumers(graph)
    outputs = {o.name for o in graph.output}
    gone = set()
    for node in graph.node:
        if node.op_type != "MatMulIntegerToFloat" or node.output[0] in outputs:
            continue
        users = readers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add":
            continue
        add = users[0]
        (bias,) = [x for x in add.input if x != node.output[0]] or [None]
        weight = shapes.get(node.input[1])
        if bias not in shapes or weight is None or shapes[bias] != weight[-1:]:
            continue
        node.input.append(bias)  # inputs 0-5 are all present: bias is the 7th
        node.output[0] = add.output[0]
        gone.add(id(add))
    drop_nodes(graph, gone)
    return len(gone)


def dequantize_outputs(path: Path) -> dict[str, int]:
    """Rewrite each QLinearMatMul whose only consumer is a DequantizeLinear into one
    MatMulIntegerToFloat (com.microsoft) producing the same fp32 tensor without the uint8
    rounding in between, with the following bias Add folded in; returns how many of each."""
    from onnx import helper

    model = onnx.load(str(path))
    graph = model.graph
    readers = consumers(graph)
    outputs = {o.name for o in graph.output}
    gone: set[int] = set()
    for i, node in enumerate(graph.node):
        users = readers.get(node.output[0], []) if node.op_type == "QLinearMatMul" else []
        if len(users) != 1 or users[0].op_type != "DequantizeLinear" or node.output[0] in outputs:
            continue
        a, a_scale, a_zero, b, b_scale, b_zero = node.input[:6]
        graph.node[i].CopyFrom(
            helper.make_node(
                "MatMulIntegerToFloat",
                [a, b, a_scale, b_scale, a_zero, b_zero],
                [users[0].output[0]],
                name=f"{node.name}_float_out",
                domain="com.microsoft",
            )
        )
        gone.add(id(users[0]))
    drop_nodes(graph, gone)
    count = len(gone)
    folded = _absorb_bias(graph)
    prune(graph)  # the dropped requantizations' output scales and zero points
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))
    return {"MatMulIntegerToFloat": count, "bias_folded": folded}


EMBEDDING_TABLE_BYTES = 1 << 20  # fp32 lookup tables this size or more are stored as int8


def quantize_tables(path: Path) -> dict[str, int]:
    """Store each large fp32 Gather table (the word embeddings: 47 MB of MiniLM's 59 MB int8
    file) as int8 rows with one fp32 scale per row; returns {"int8_tables": how many}.

    Gather(table, ids) becomes Gather(int8 table, ids) -> Cast -> Mul by Gather(row scales, ids):
    symmetric per-row quantization, dequantized only for the rows a batch looks up, with plain
    ONNX operators (no contrib kernel). The rounding error of an element is at most half its
    row's scale (max |row| / 254); the int8 gate measures what it does to the vectors.
    """
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    tables = {
        i.name: i
        for i in graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT
        and len(i.dims) == 2
        and 4 * i.dims[0] * i.dims[1] >= EMBEDDING_TABLE_BYTES
    }
    readers = consumers(graph)
    done = 0
    for name, init in tables.items():
        users = readers.get(name, [])
        if not users or not all(_row_lookup(n, name) for n in users):
            continue  # read by something other than a lookup of rows: left as it is
        table = numpy_helper.to_array(init)
        scale = np.abs(table).max(axis=1, keepdims=True) / 127.0
        scale[scale == 0] = 1.0  # an all-zero row stays zero
        q = np.clip(np.rint(table / scale), -127, 127).astype(np.int8)
        graph.initializer.remove(init)
        graph.initializer.extend(
            [
                numpy_helper.from_array(q, f"{name}_int8"),
                numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
            ]
        )
        for node in users:
            out, ids = node.output[0], node.input[1]
            node.input[0] = f"{name}_int8"
            node.output[0] = f"{out}_int8"
            extra = [
                helper.make_node("Gather", [f"{name}_scale", ids], [f"{out}_scale"]),
                helper.make_node("Cast", [f"{out}_int8"], [f"{out}_float"], to=1),
                helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out]),
            ]
            at = list(graph.node).index(node) + 1
            for k, n in enumerate(extra):
                n.name = f"{node.name}_dequantize_{k}"
                graph.node.insert(at + k, n)
        done += 1
    if done:
        onnx.save(model, str(path))
    return {"int8_tables": done}


def _row_lookup(node: onnx.NodeProto, table: str) -> bool:
    """node is a Gather of whole rows (axis 0) of table."""
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    return node.op_type == "Gather" and node.input[0] == table and axis == 0
