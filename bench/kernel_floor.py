"""Floor candidates for bench/latency.py: a model's matrix products and attention, nothing else.

A floor graph has, per layer, the model's six linear products (Q, K and V from the layer's
input, the attention output, the feed-forward's two) around one ONNX `Attention` node, at the
model's widths and heads, in ONNX Runtime with embedrt's session options; no embeddings,
LayerNorm, GELU, residual Add, SmoothQuant Mul, bias or pooling. "floor-fp32": fp32 MatMuls.
"floor-int8": what the int8 graph runs for them, a QuantizeLinear of each product's input
(one shared by Q, K and V) and MatMulIntegerToFloat with per-column int8 weights and a bias.
Each tokenizes first, as `encode` does, and runs [texts, longest, width].

Timed paired beside embedrt and sentence-transformers, a floor's ratio to st-torch is what a
graph on ONNX Runtime's kernels would reach if all its other nodes took no time: a latency
target below it cannot be met with these kernels on this machine (issue 20;
docs/decisions.md, "Single-text latency measured paired"). Weights are random, scaled to keep
values O(1); the kernels' speed does not depend on them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EncodeFn = Callable[[list[str], int], np.ndarray]
LAYER = 6  # linear products per layer: Q, K, V, attention output, feed-forward in and out


def linear_shapes(graph_path: Path) -> list[tuple[int, int]]:
    """(in, out) of each MatMul or Gemm whose second input is a 2-D initializer, in graph order
    (a Gemm with transB=1 holds its weight as [out, in])."""
    graph = onnx.load(graph_path, load_external_data=False).graph
    weights = {i.name: tuple(i.dims) for i in graph.initializer if len(i.dims) == 2}
    shapes = []
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in weights:
            k, n = weights[node.input[1]]
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            shapes.append((n, k) if trans_b else (k, n))
    return shapes


def layer_shapes(shapes: list[tuple[int, int]]) -> tuple[int, int, int]:
    """(layers, hidden, inner) when shapes are whole layers of Q, K, V and the attention output
    (hidden x hidden), then hidden x inner and inner x hidden; ValueError otherwise (a Dense
    head after the transformer, or another layout)."""
    hidden, inner = shapes[4] if len(shapes) >= LAYER else (0, 0)
    layer = [(hidden, hidden)] * 4 + [(hidden, inner), (inner, hidden)]
    if not shapes or len(shapes) % LAYER or shapes != layer * (len(shapes) // LAYER):
        raise ValueError(f"linear products {shapes[:LAYER]}... are not layers of {LAYER}")
    return len(shapes) // LAYER, hidden, inner


def attention_attrs(graph_path: Path) -> dict[str, float]:
    """q_num_heads, kv_num_heads and scale of the graph's first ONNX Attention node."""
    graph = onnx.load(graph_path, load_external_data=False).graph
    for node in graph.node:
        if node.op_type == "Attention" and node.domain in ("", "ai.onnx"):
            return {a.name: helper.get_attribute_value(a) for a in node.attribute}
    raise ValueError(f"{graph_path}: no ONNX Attention node to take the heads from")


def floor_model(
    layers: int, hidden: int, inner: int, attention: dict, precision: str, seed: int = 0
) -> bytes:
    """The floor graph: inputs x [B, L, hidden] and the additive mask [B, 1, L, L]."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def product(x: str, k: int, n: int, name: str) -> str:
        w = rng.standard_normal((k, n)) / np.sqrt(k)
        if precision == "fp32":
            inits.append(numpy_helper.from_array(w.astype(np.float32), f"{name}_w"))
            nodes.append(helper.make_node("MatMul", [x, f"{name}_w"], [name]))
            return name
        col = np.abs(w).max(axis=0) / 127
        inits.extend(
            [
                numpy_helper.from_array(np.round(w / col).astype(np.int8), f"{name}_w"),
                numpy_helper.from_array(col.astype(np.float32), f"{name}_ws"),
                numpy_helper.from_array(np.zeros(n, np.float32), f"{name}_b"),
            ]
        )
        inputs = [x, f"{name}_w", "xs", f"{name}_ws", "xz", "", f"{name}_b"]
        nodes.append(
            helper.make_node("MatMulIntegerToFloat", inputs, [name], domain="com.microsoft")
        )
        return name

    def quantized(x: str) -> str:
        if precision == "fp32":
            return x
        nodes.append(helper.make_node("QuantizeLinear", [x, "xs", "xz"], [f"{x}_q"]))
        return f"{x}_q"

    x = "x"
    for i in range(layers):
        xq = quantized(x)
        qkv = [product(xq, hidden, hidden, f"l{i}_{p}") for p in "qkv"]
        nodes.append(helper.make_node("Attention", [*qkv, "mask"], [f"l{i}_ctx"], **attention))
        out = product(quantized(f"l{i}_ctx"), hidden, hidden, f"l{i}_o")
        up = product(quantized(out), hidden, inner, f"l{i}_up")
        x = product(quantized(up), inner, hidden, f"l{i}_down")
    if precision == "int8":
        inits.append(numpy_helper.from_array(np.array(0.05, np.float32), "xs"))
        inits.append(numpy_helper.from_array(np.array(128, np.uint8), "xz"))
    graph = helper.make_graph(
        nodes,
        f"floor-{precision}",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "L", hidden]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", 1, "L", "L"]),
        ],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        inits,
    )
    opsets = [helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10).SerializeToString()


def floor_candidate(precision: str) -> Callable[[argparse.Namespace], EncodeFn]:
    """A worker.py candidate: tokenize as the artifact's Encoder does, then run the floor graph
    at the model's shapes (from the artifact's fp32 graph) and heads (from its int8 graph)."""

    def load(args: argparse.Namespace) -> EncodeFn:
        import onnxruntime as ort

        from embedrt.loading import seq_length
        from embedrt.manifest import load_manifest
        from embedrt.session import SessionOptions, ort_session_options
        from embedrt.tokenizer import TextTokenizer

        artifact = Path(args.artifact)
        manifest = load_manifest(artifact)
        tokenizer = TextTokenizer.from_bytes(
            (artifact / manifest.tokenizer.file).read_bytes(),
            manifest.tokenizer.file,
            seq_length(manifest, None),
            manifest.do_lower_case,
        )
        layers, hidden, inner = layer_shapes(
            linear_shapes(artifact / manifest.variant("fp32").file)
        )
        attention = attention_attrs(artifact / manifest.variant("int8").file)
        model = floor_model(layers, hidden, inner, attention, precision)
        so, extra = ort_session_options(SessionOptions(args.threads, args.spinning), "cpu")
        session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"], **extra)
        rng = np.random.default_rng(1)
        values = np.empty(0, np.float32)  # grown as needed; each input is a view of its start

        def encode(texts: list[str], batch_size: int) -> np.ndarray:
            nonlocal values
            rows = tokenizer.tokenize(texts)
            b, length = len(rows), max(map(len, rows))
            size = b * length * hidden
            if values.size < size:
                values = rng.standard_normal(size).astype(np.float32)
            x = values[:size].reshape(b, length, hidden)
            mask = np.zeros((b, 1, length, length), np.float32)
            return session.run(None, {"x": x, "mask": mask})[0]

        return encode

    return load
