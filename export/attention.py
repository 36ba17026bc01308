"""The int8 graph's self-attention as ONNX's own Attention operator (opset 23).

torch exports a BERT-style layer's attention as some thirteen nodes: Q, K and V each reshaped
to heads and transposed, Q.K^T, its scale, the padding mask added, Softmax, the product with V,
and the heads transposed and reshaped back. ONNX Runtime (1.23 and later) runs the same
computation as one CPU kernel, Attention, without materializing each step's tensors: the int8
graph ran 8-17% faster on 2 threads with every vector bit-identical (docs/decisions.md, "int8
attention as ONNX's Attention"). The rewrite matches that exact pattern only; a graph where it
finds none (DeBERTa's disentangled attention, MPNet's position bias, decoders' grouped heads)
is left as it was, at its own opset. The export then runs both graphs on the calibration texts
and keeps the rewrite only where every vector agrees (quantize.attention_ops).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ATTENTION_OPSET = 23
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


def attention_ops(path: Path, feeds: Iterable[dict[str, np.ndarray]]) -> dict[str, int]:
    """Rewrite the graph at path (to_attention_ops) where ONNX Runtime then gives every feed
    the same outputs as before, to 1e-5; else leave it. Returns {"attention": rewritten}."""
    import onnxruntime as ort

    rewritten = path.with_name(f".attention-{path.name}")
    try:
        model = onnx.load(str(path))
        count = to_attention_ops(model)
        if not count:
            return {"attention": 0}
        onnx.save(model, str(rewritten))
        del model
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the kept graph's warnings are not the user's business
        before, after = (
            ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
            for p in (path, rewritten)
        )
        for feed in feeds:
            for a, b in zip(before.run(None, feed), after.run(None, feed), strict=True):
                if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-5):
                    return {"attention": 0}
        del before, after
        rewritten.replace(path)
    except Exception:  # ONNX Runtime cannot load or run it: the graph stays as it was
        return {"attention": 0}
    finally:
        rewritten.unlink(missing_ok=True)
    return {"attention": count}


@dataclass
class _Match:
    q: str
    k: str
    v: str
    mask: str
    scale: float
    heads: int
    out: str
    nodes: list[onnx.NodeProto]


class _Graph:
    """A graph's producers, consumers, small constants and weight shapes, for matching."""

    def __init__(self, graph: onnx.GraphProto):
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.values = {
            n.output[0]: numpy_helper.to_array(n.attribute[0].t)
            for n in graph.node
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
        }
        self.shapes = {i.name: list(i.dims) for i in graph.initializer}
        for init in graph.initializer:
            if init.data_location != onnx.TensorProto.EXTERNAL and np.prod(init.dims) <= 16:
                self.values[init.name] = numpy_helper.to_array(init)

    def only(self, name: str) -> onnx.NodeProto | None:
        """The one node reading name, or None."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 else None

    def made_by(self, name: str, *ops: str) -> onnx.NodeProto | None:
        """The node of one of these types that makes name, read by nothing else, or None."""
        n = self.producer.get(name)
        return n if n is not None and n.op_type in ops and self.only(name) is not None else None

    def scalar(self, name: str) -> float | None:
        value = self.values.get(name)
        return float(value.reshape(())) if value is not None and value.size == 1 else None

    def split_heads(self, name: str, perm: list[int]) -> tuple[str, int, list] | None:
        """(x, H, its two nodes) where name is Transpose(Reshape(x, [B, L, H, D]), perm)."""
        transpose = self.made_by(name, "Transpose")
        if transpose is None or _perm(transpose) != perm:
            return None
        reshape = self.made_by(transpose.input[0], "Reshape")
        if reshape is None:
            return None
        heads = self.heads(reshape.input[1], self.width(reshape.input[0]))
        return None if heads is None else (reshape.input[0], heads, [reshape, transpose])

    def heads(self, shape: str, width: int | None) -> int | None:
        """H of a [B, L, H, D] shape (a constant, or a Concat whose last two parts are); H = -1
        (left to Reshape) is width / D."""
        if shape in self.values:
            dims = [int(x) for x in self.values[shape].reshape(-1)]
            hd = dims[2:] if len(dims) == 4 else []
        else:
            concat = self.producer.get(shape)
            if concat is None or concat.op_type != "Concat" or len(concat.input) != 4:
                return None
            hd = [self.scalar(name) for name in concat.input[2:]]  # type: ignore[misc]
            if None in hd:
                return None
            hd = [int(x) for x in hd]
        if len(hd) != 2 or hd[1] <= 0:
            return None
        h, d = hd
        if h == -1 and width is not None and width % d == 0:
            return width // d
        return h if h > 0 else None

    def width(self, name: str) -> int | None:
        """A linear layer's output width: its 2-D weight's columns (MatMul, Gemm or
        MatMulIntegerToFloat, or the MatMul before a bias Add), else None."""
        node = self.producer.get(name)
        if node is not None and node.op_type == "Add":
            node = next(
                (
                    self.producer[i]
                    for i in node.input
                    if i in self.producer and self.producer[i].op_type == "MatMul"
                ),
                None,
            )
        if node is None or node.op_type not in ("MatMul", "MatMulIntegerToFloat", "Gemm"):
            return None
        dims = self.shape(node.input[1])
        return dims[1] if dims is not None and len(dims) == 2 else None

    def shape(self, name: str) -> list[int] | None:
        """An initializer's dimensions, through Identity nodes (torch shares equal weights)."""
        while name not in self.shapes and name in self.producer:
            node = self.producer[name]
            if node.op_type != "Identity":
                return None
            name = node.input[0]
        return self.shapes.get(name)


def to_attention_ops(model: onnx.ModelProto) -> int:
    """Rewrite every matched attention into one Attention node, in place; the model moves to
    opset 23 when there is one. Returns how many were rewritten (0: the model is unchanged)."""
    graph = model.graph
    default = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if default < 13:  # Unsqueeze, ReduceSum and Split changed form at 13: not rewritten here
        return 0
    g = _Graph(graph)
    matches = [m for n in graph.node if n.op_type == "Softmax" and (m := _match(n, g))]
    if not matches or len({m.mask for m in matches}) != 1:
        return 0
    mask = matches[0].mask
    full = f"{mask}_per_query"  # the padding mask [B,1,1,L] as [B,1,L,L], made once
    prelude = _expand_mask(graph, mask, full)
    gone = {id(n) for m in matches for n in m.nodes}
    by_output = {
        m.out: helper.make_node(
            "Attention",
            [m.q, m.k, m.v, full],
            [m.out],
            name=f"{m.out}_attention",
            q_num_heads=m.heads,
            kv_num_heads=m.heads,
            scale=m.scale,
        )
        for m in matches
    }
    nodes: list[onnx.NodeProto] = [] if mask not in {i.name for i in graph.input} else prelude
    for n in graph.node:
        if id(n) in gone:
            if n.output[0] in by_output:  # the pattern's last node: its place in the order
                nodes.append(by_output[n.output[0]])
            continue
        nodes.append(n)
        if mask in n.output:
            nodes.extend(prelude)
    del graph.node[:]
    graph.node.extend(nodes)
    _prune(graph)
    _to_opset(model, ATTENTION_OPSET)
    return len(matches)


def _match(softmax: onnx.NodeProto, g: _Graph) -> _Match | None:
    """The attention around this Softmax, when it is exactly torch's BERT-style pattern:
    Reshape(Merge(Softmax(Q.K^T x scale + mask) . V)), Q, K, V split into heads."""
    axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
    add = g.made_by(softmax.input[0], "Add")
    if axis not in (-1, 3) or add is None:
        return None
    scaled, mask = add.input
    mul = g.made_by(scaled, "Mul", "Div")
    factor = g.scalar(mul.input[1]) if mul is not None else None
    if mul is None or not factor:
        return None
    qk = g.made_by(mul.input[0], "MatMul")
    pv = g.only(softmax.output[0])
    if qk is None or pv is None or pv.op_type != "MatMul" or pv.input[0] != softmax.output[0]:
        return None
    merge = g.only(pv.output[0])
    if merge is None or merge.op_type != "Transpose" or _perm(merge) != [0, 2, 1, 3]:
        return None
    out = g.only(merge.output[0])
    q = g.split_heads(qk.input[0], [0, 2, 1, 3])
    k = g.split_heads(qk.input[1], [0, 2, 3, 1])
    v = g.split_heads(pv.input[1], [0, 2, 1, 3])
    if out is None or out.op_type != "Reshape" or q is None or k is None or v is None:
        return None
    if not q[1] == k[1] == v[1]:
        return None
    return _Match(
        q[0],
        k[0],
        v[0],
        mask,
        factor if mul.op_type == "Mul" else 1.0 / factor,
        q[1],
        out.output[0],
        [*q[2], *k[2], *v[2], qk, mul, add, softmax, pv, merge, out],
    )


def _perm(node: onnx.NodeProto) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])


def _expand_mask(graph: onnx.GraphProto, mask: str, out: str) -> list[onnx.NodeProto]:
    """Nodes that make `out`, the mask [B, 1, 1, L] broadcast to [B, 1, L, L] (ONNX Runtime's
    Attention takes one mask row per query), from the mask alone, so they may follow it."""
    p = f"{out}_"
    graph.initializer.extend(
        numpy_helper.from_array(np.array([v], np.int64), f"{p}{v}") for v in (0, 1, 3, 4)
    )
    return [
        helper.make_node("Shape", [mask], [f"{p}shape"], name=f"{p}Shape"),
        helper.make_node("Slice", [f"{p}shape", f"{p}0", f"{p}1"], [f"{p}b"], name=f"{p}B"),
        helper.make_node("Slice", [f"{p}shape", f"{p}3", f"{p}4"], [f"{p}l"], name=f"{p}L"),
        helper.make_node(
            "Concat", [f"{p}b", f"{p}1", f"{p}l", f"{p}l"], [f"{p}dims"], name=f"{p}Dims", axis=0
        ),
        helper.make_node("Expand", [mask, f"{p}dims"], [out], name=f"{p}Expand"),
    ]


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initializers nothing reads any more (the removed reshapes' shapes)."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for n in graph.node for name in n.input} | outputs
        dead = [n for n in graph.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {name for n in graph.node for name in n.input} | outputs
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)


def _to_opset(model: onnx.ModelProto, version: int) -> None:
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
