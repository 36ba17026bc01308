"""SmoothQuant for the int8 variant: each linear layer's activation outliers moved into its weights.

A few channels of a transformer's activations are far larger than the rest (all-mpnet-base-v2's
GELU outputs and attention-output LayerNorms have a handful such channels). Static int8 gives a
tensor one scale, set by its largest value, so those channels leave the others a handful of
levels, and MPNet's int8 vectors drifted far from fp32. SmoothQuant (Xiao et al., 2023) divides
each input channel j of a linear layer by s_j and multiplies row j of its weights by s_j, which
leaves the product unchanged in fp32 and evens out the activation ranges at the weights'
expense: s_j = max|x_j|^alpha / max|w_j|^(1 - alpha), with max|x_j| over the calibration texts'
real tokens. The division is one Mul node per layer input (an elementwise pass, small beside
the MatMul).

ONNX Runtime's quantize_static has a SmoothQuant option, but it imports
neural_compressor.adaptor.ox_utils, which neural-compressor 3 removed; hence this module.
alpha 0.7 was the best of the values tried for both MPNet and MiniLM; the sweep, the quality and
the speed it costs: bench/results/int8_smooth.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

SMOOTH_ALPHA = 0.7
_FLOOR = 1e-5  # a channel that is all zeros keeps s = 1-ish instead of dividing by 0


def linear_inputs(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Activation tensor -> the linear layers (MatMul with a weight initializer of its own)
    that read it. Layers whose weight is shared with another node are left out: scaling a
    shared weight for one reader would change the other."""
    weights = {i.name for i in graph.initializer}
    readers: dict[str, int] = defaultdict(int)
    for node in graph.node:
        for name in node.input:
            readers[name] += 1
    groups: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2:
            continue
        x, w = node.input
        if w in weights and x not in weights and readers[w] == 1:
            groups[x].append(node)
    return dict(groups)


def channel_absmax(
    model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """max |x| per channel of every linear layer's input, over the real (unpadded) tokens of
    the feeds (input_ids and attention_mask batches), or over all of an input without the
    batch's [B, L] axes."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = sorted(linear_inputs(probe.graph))
    outputs = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        helper.make_empty_tensor_value_info(n) for n in names if n not in outputs
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    absmax: dict[str, np.ndarray] = {}
    for feed in feeds:
        real = feed["attention_mask"].astype(bool)
        for name, x in zip(names, session.run(names, feed), strict=True):
            # the real tokens' activations where x has the batch's [B, L] axes; else all of x's
            # rows (DeBERTa's relative position embeddings [1, 2k, hidden], not a text's)
            rows = x[real] if x.shape[:-1] == real.shape else x.reshape(-1, x.shape[-1])
            peak = np.abs(rows).max(axis=0)
            absmax[name] = np.maximum(absmax[name], peak) if name in absmax else peak
    return absmax


def smooth(model: onnx.ModelProto, absmax: dict[str, np.ndarray], alpha: float) -> int:
    """Smooth every linear layer of model in place; returns how many inputs were smoothed."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    muls: dict[str, onnx.NodeProto] = {}  # inserted before the first reader of the input
    smoothed = 0
    for x, layers in linear_inputs(graph).items():
        if x not in absmax:
            continue
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float64) for n in layers]
        w_peak = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        a_peak = np.maximum(absmax[x].astype(np.float64), _FLOOR)
        s = a_peak**alpha / np.maximum(w_peak, _FLOOR) ** (1 - alpha)
        for node, w in zip(layers, weights, strict=True):
            scaled = numpy_helper.from_array((w * s[:, None]).astype(np.float32), node.input[1])
            inits[node.input[1]].CopyFrom(scaled)
            node.input[0] = f"{x}_smoothed"
        divisor = f"{x}_smooth_scale"
        graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), divisor))
        muls[f"{x}_smoothed"] = helper.make_node(
            "Mul", [x, divisor], [f"{x}_smoothed"], name=f"{x}_smooth"
        )
        smoothed += 1
    ordered: list[onnx.NodeProto] = []
    for node in graph.node:
        for name in node.input:
            if name in muls:
                ordered.append(muls.pop(name))
        ordered.append(node)
    del graph.node[:]
    graph.node.extend(ordered)
    return smoothed
