"""The int8 graph's self-attention as ONNX's own Attention operator (opset 23).

torch exports a BERT-style layer's attention as some thirteen nodes: Q, K and V each reshaped
to heads and transposed, Q.K^T, its scale, the padding mask added, Softmax, the product with V,
and the heads transposed and reshaped back. ONNX Runtime (1.23 and later) runs the same
computation as one CPU kernel, Attention, without materializing each step's tensors: the int8
graph ran 8-17% faster on 2 threads with every vector bit-identical (docs/decisions.md, "int8
attention as ONNX's Attention"). The rewrite matches that exact pattern only
(attention_match.py), with what every layer adds to its scores (the padding mask, MPNet's
position bias) summed once into Attention's mask; a graph where it finds none (DeBERTa's
disentangled attention, decoders' grouped heads) is left as it was, at its own opset. The
export then runs both graphs on the calibration texts and keeps the rewrite only where every
vector agrees (attention_ops).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .attention_match import GraphIndex, match_attention
from .onnx_edit import prune, to_opset

ATTENTION_OPSET = 23


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


def to_attention_ops(model: onnx.ModelProto) -> int:
    """Rewrite every matched attention into one Attention node, in place; the model moves to
    opset 23 when there is one. Returns how many were rewritten (0: the model is unchanged)."""
    graph = model.graph
    default = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if default < 13:  # Unsqueeze, ReduceSum and Split changed form at 13: not rewritten here
        return 0
    g = GraphIndex(graph)
    matches = [m for n in graph.node if n.op_type == "Softmax" and (m := match_attention(n, g))]
    if not matches or len({m.mask for m in matches}) != 1:  # one mask serves every layer
        return 0
    terms = matches[0].mask
    gone = {id(n) for m in matches for n in m.nodes}
    if any(t in g.producer and id(g.producer[t]) in gone for t in terms):
        return 0  # a term made inside an attention pattern (not seen in any exporter)
    full = f"{terms[-1]}_per_query"  # what Attention adds to the scores, made once
    prelude = _expand_mask(graph, terms[0], full) if len(terms) == 1 else _sum(terms, full)
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
    # the prelude follows the last node that makes one of its terms
    waiting = set(terms) - {i.name for i in graph.input} - {i.name for i in graph.initializer}
    nodes: list[onnx.NodeProto] = [] if waiting else list(prelude)
    for n in graph.node:
        if id(n) in gone:
            if n.output[0] in by_output:  # the pattern's last node: its place in the order
                nodes.append(by_output[n.output[0]])
            continue
        nodes.append(n)
        if waiting.intersection(n.output):
            waiting -= set(n.output)
            if not waiting:
                nodes.extend(prelude)
    del graph.node[:]
    graph.node.extend(nodes)
    prune(graph)
    to_opset(model, ATTENTION_OPSET)
    return len(matches)


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


def _sum(terms: tuple[str, ...], out: str) -> list[onnx.NodeProto]:
    """The node that adds the two terms into `out`. Assumed to give a mask row per query, as
    MPNet's position bias [B, H, L, L] plus the padding mask [B, 1, 1, L] does; terms that do
    not fail attention_ops's check on padded batches, which then keeps the graph as it was."""
    first, second = terms
    return [helper.make_node("Add", [first, second], [out], name=f"{out}_Add")]
