"""Small edits of an ONNX graph that the int8 rewrites share (quantize.py, attention.py)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Reductions whose axes became an input at opset 18 (ReduceSum's did at 13).
_REDUCE_AXES_AT_18 = {
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def drop_nodes(graph: onnx.GraphProto, gone: set[int]) -> None:
    """Remove the nodes whose id() is in gone, keeping the others' order. The caller must hold
    those nodes (a protobuf message's id is only its own while it is alive)."""
    kept = [n for n in graph.node if id(n) not in gone]
    del graph.node[:]
    graph.node.extend(kept)


def prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes nothing reads any more, then the initializers nothing reads (ONNX Runtime
    warns about each unused one on every load)."""
    outputs = {o.name for o in graph.output}
    while True:
        read = _reads(graph) | outputs
        kept = [n for n in graph.node if any(o in read for o in n.output)]
        if len(kept) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(kept)
    read = _reads(graph) | outputs
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)


def _reads(graph: onnx.GraphProto) -> set[str]:
    """Names the graph's nodes read, within their subgraphs (If, Loop) too."""
    names: set[str] = set()
    for node in graph.node:
        names.update(node.input)
        for a in node.attribute:
            for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else a.graphs:
                names |= _reads(sub)
    return names


def to_opset(model: onnx.ModelProto, version: int) -> None:
    """Declare the default domain at `version`, moving the reductions' axes attributes to
    inputs as opset 18 wants; every other operator here reads the same at 23."""
    for node in model.graph.node:
        axes = [a for a in node.attribute if a.name == "axes"]
        if node.op_type in _REDUCE_AXES_AT_18 and axes:
            name = f"{node.name or node.output[0]}_axes"
            model.graph.initializer.append(
                numpy_helper.from_array(np.array(axes[0].ints, np.int64), name)
            )
            node.attribute.remove(axes[0])
            node.input.append(name)
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = max(op.version, version)
    default = helper.make_opsetid("", version)
    model.ir_version = max(model.ir_version, helper.find_min_ir_version_for([default]))
