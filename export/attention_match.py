"""Finding torch's BERT-style self-attention in an exported graph, for attention.py to rewrite.

torch exports a layer's attention as some thirteen nodes: Q, K and V each reshaped to heads and
transposed, Q.K^T, its scale, the padding mask added, Softmax, the product with V, and the heads
transposed and reshaped back. match_attention finds exactly that pattern around a Softmax, or
nothing. The scores may have more than the padding mask added: MPNet adds a relative position
bias that every layer shares.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from .onnx_edit import consumers


@dataclass
class AttentionMatch:
    q: str
    k: str
    v: str
    mask: tuple[str, ...]  # what is added to the scaled scores: the padding mask, a bias
    scale: float
    heads: int
    out: str
    nodes: list[onnx.NodeProto]


class GraphIndex:
    """A graph's producers, consumers, small constants and weight shapes, for matching."""

    def __init__(self, graph: onnx.GraphProto):
        self.producer = {o: n for n in graph.node for o in n.output}
        self.outputs = {o.name for o in graph.output}
        self.consumers = consumers(graph)
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
        """The one node reading name, or None (also when name is a graph output)."""
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

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


def match_attention(softmax: onnx.NodeProto, g: GraphIndex) -> AttentionMatch | None:
    """The attention around this Softmax, when it is exactly torch's BERT-style pattern:
    Reshape(Merge(Softmax(Q.K^T x scale + mask) . V)), Q, K, V split into heads."""
    axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
    if axis not in (-1, 3):
        return None
    sums: list[onnx.NodeProto] = []
    leaves = _addends(softmax.input[0], g, sums)
    scores = {x: nodes for x in leaves if (nodes := _scaled_product(x, g))}
    # the scores and one or two terms: the padding mask, and MPNet's position bias
    if not sums or len(scores) != 1 or len(leaves) > 3:
        return None
    ((scaled, (mul, qk)),) = scores.items()
    factor = g.scalar(mul.input[1])
    pv = g.only(softmax.output[0])
    if not factor or pv is None or pv.op_type != "MatMul" or pv.input[0] != softmax.output[0]:
        return None
    merge = g.only(pv.output[0])
    if merge is None or merge.op_type != "Transpose" or _perm(merge) != [0, 2, 1, 3]:
        return None
    out = _merged(merge, g)
    q = g.split_heads(qk.input[0], [0, 2, 1, 3])
    k = g.split_heads(qk.input[1], [0, 2, 3, 1])
    v = g.split_heads(pv.input[1], [0, 2, 1, 3])
    if out is None or q is None or k is None or v is None:
        return None
    if not q[1] == k[1] == v[1]:
        return None
    return AttentionMatch(
        q[0],
        k[0],
        v[0],
        tuple(sorted(x for x in leaves if x != scaled)),
        factor if mul.op_type == "Mul" else 1.0 / factor,
        q[1],
        out.output[0],
        [*q[2], *k[2], *v[2], qk, mul, *sums, softmax, pv, merge, out],
    )


def _addends(name: str, g: GraphIndex, sums: list[onnx.NodeProto]) -> list[str]:
    """The terms of name as a tree of Adds that nothing else reads (those Adds go to sums)."""
    add = g.made_by(name, "Add")
    if add is None:
        return [name]
    sums.append(add)
    return [x for i in add.input for x in _addends(i, g, sums)]


def _merged(merge: onnx.NodeProto, g: GraphIndex) -> onnx.NodeProto | None:
    """The Reshape that merges the heads after merge, when nothing else reads them but Shapes
    that only compute that Reshape's target (MPNet's x.size()[:-2] + (width,)), else None."""
    users = g.consumers.get(merge.output[0], [])
    out = [n for n in users if n.op_type == "Reshape" and n.input[0] == merge.output[0]]
    if len(out) != 1 or merge.output[0] in g.outputs:
        return None
    todo = [n for n in users if n is not out[0]]
    if any(n.op_type != "Shape" for n in todo):
        return None
    seen: set[int] = set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type not in ("Shape", "Gather", "Slice", "Unsqueeze", "Squeeze", "Concat"):
            return None
        for name in node.output:
            if name in g.outputs:
                return None
            todo += [n for n in g.consumers.get(name, []) if n is not out[0]]
    return out[0]


def _scaled_product(name: str, g: GraphIndex) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
    """(the Mul or Div, the MatMul) where name is a product of two tensors times or over
    something (a constant, checked by the caller), else None."""
    scale = g.made_by(name, "Mul", "Div")
    product = g.made_by(scale.input[0], "MatMul") if scale is not None else None
    return None if scale is None or product is None else (scale, product)


def _perm(node: onnx.NodeProto) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
