"""model_fp16.onnx: the optimized graph in fp16 for CUDA, with the pooling tail kept in fp32.

keep_io_types leaves input_ids/attention_mask int64 and sentence_embedding float32. ONNX
Runtime's default block list keeps only a few ops in fp32; here every node that turns the last
hidden state into the sentence embedding (masked sum, token count, division, L2 norm) stays in
fp32 too: sums over up to 256 tokens of 384 values overflow or lose precision in fp16.
"""

from __future__ import annotations

from pathlib import Path

import onnx


def pooling_tail(graph: onnx.GraphProto) -> list[str]:
    """Names of the nodes the output needs beyond what the last hidden state needs.

    The last hidden state is the output of the last (Skip)LayerNormalization in the graph.
    """
    producers = {out: n for n in graph.node for out in n.output}
    norms = [n for n in graph.node if n.op_type in ("SkipLayerNormalization", "LayerNormalization")]
    if not norms:
        raise ValueError("no LayerNormalization in the graph: not a transformer encoder")
    body = _cone(producers, [norms[-1].output[0]])
    tail = _cone(producers, [o.name for o in graph.output]) - body
    return sorted(producers[t].name for t in tail)


def _cone(producers: dict[str, onnx.NodeProto], tensors: list[str]) -> set[str]:
    """The first outputs of the nodes the given tensors depend on (a node's identity)."""
    seen: set[str] = set()
    stack = list(tensors)
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.output[0] in seen:
            continue
        seen.add(node.output[0])
        stack.extend(node.input)
    return seen


def convert_fp16(src: Path, dst: Path) -> list[str]:
    """Write the fp16 graph; returns the names of the nodes kept in fp32 for pooling."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(src))
    for i, node in enumerate(model.graph.node):  # the converter blocks nodes by name
        if not node.name:
            node.name = f"embedrt_{node.op_type}_{i}"
    keep = pooling_tail(model.graph)
    wrapped = OnnxModel(model)
    # Symbolic shape inference knows the contrib ops, so the converter sees every tensor's type
    # and inserts the fp16 -> fp32 casts in front of the kept tail.
    wrapped.convert_float_to_float16(
        use_symbolic_shape_infer=True,
        keep_io_types=True,
        op_block_list=list(DEFAULT_OP_BLOCK_LIST),
        node_block_list=keep,
    )
    wrapped.save_model_to_file(str(dst))
    return keep
