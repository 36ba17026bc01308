"""Floor candidates for bench/latency.py: a model's matrix products and attention, nothing else.

A floor graph has, per layer, the model's six linear products (Q, K and V from the layer's
input, the attention output, the feed-forward's two) and its attention, at the model's widths
and heads, in ONNX Runtime with embedrt's session options; no embeddings, LayerNorm, GELU,
residual Add, SmoothQuant Mul, mask or position plumbing, or pooling. The forms (FORMS):

    floor-fp32      fp32 MatMuls, Q, K and V apart, into ONNX's Attention (opset 23)
    floor-fp32-qkv  Q, K and V as one product inside com.microsoft's Attention, as the opt
                    graph runs them; the other products fp32 MatMuls
    floor-int8      as the int8 graph runs them: a QuantizeLinear of each product's input (one
                    shared by Q, K and V), MatMulIntegerToFloat with per-column int8 weights,
                    zero points and a bias, and ONNX's Attention

Each tokenizes first, as `encode` does, and runs [texts, longest, width] in batches of
batch_size. Timed paired beside embedrt and sentence-transformers (latency.py), a floor's
ratio to st-torch is what a graph of that layout would reach if all its other nodes took no
time (issue 20; docs/decisions.md, "Single-text floors"). Weights are random, scaled to keep
values O(1); the kernels' speed does not depend on them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EncodeFn = Callable[[list[str], int], np.ndarray]
LAYER = 6  # linear products per layer: Q, K, V, attention output, feed-forward in and out
FORMS = ("fp32", "fp32-qkv", "int8")


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


def attention_attrs(graph_path: Path) -> dict[str, Any]:
    """q_num_heads, kv_num_heads and scale of the graph's first ONNX Attention node."""
    graph = onnx.load(graph_path, load_external_data=False).graph
    for node in graph.node:
        if node.op_type == "Attention" and node.domain in ("", "ai.onnx"):
            return {a.name: helper.get_attribute_value(a) for a in node.attribute}
    raise ValueError(f"{graph_path.name}: no ONNX Attention node to take the heads from")


def floor_layout(artifact: Path) -> tuple[int, int, int, dict[str, Any]]:
    """(layers, hidden, inner, attention attributes) of an artifact's model; ValueError saying
    why a floor cannot be built for it (no int8 variant, no ONNX Attention in it, other
    products than whole layers)."""
    from embedrt.manifest import load_manifest

    manifest = load_manifest(artifact)
    names = {v.name for v in manifest.variants}
    if "int8" not in names:
        raise ValueError("no int8 variant to take the heads from")
    layers, hidden, inner = layer_shapes(linear_shapes(artifact / manifest.variant("fp32").file))
    return layers, hidden, inner, attention_attrs(artifact / manifest.variant("int8").file)


def floor_model(
    layers: int, hidden: int, inner: int, attention: dict[str, Any], form: str, seed: int = 0
) -> bytes:
    """The floor graph of `form` (FORMS): input x [B, L, hidden], and the mask its attention
    takes: [B, 1, L, L] floats for ONNX's Attention, key lengths [B] for com.microsoft's."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def weight(k: int, n: int) -> np.ndarray:
        return rng.standard_normal((k, n)) / np.sqrt(k)

    def product(x: str, k: int, n: int, name: str) -> str:
        w = weight(k, n)
        if form != "int8":
            inits.append(numpy_helper.from_array(w.astype(np.float32), f"{name}_w"))
            nodes.append(helper.make_node("MatMul", [x, f"{name}_w"], [name]))
            return name
        col = np.abs(w).max(axis=0) / 127
        inits.extend(
            [
                numpy_helper.from_array(np.round(w / col).astype(np.int8), f"{name}_w"),
                numpy_helper.from_array(col.astype(np.float32), f"{name}_ws"),
                numpy_helper.from_array(np.zeros(n, np.int8), f"{name}_wz"),
                numpy_helper.from_array(np.zeros(n, np.float32), f"{name}_b"),
            ]
        )
        inputs = [x, f"{name}_w", "xs", f"{name}_ws", "xz", f"{name}_wz", f"{name}_b"]
        nodes.append(
            helper.make_node("MatMulIntegerToFloat", inputs, [name], domain="com.microsoft")
        )
        return name

    def quantized(x: str) -> str:
        if form != "int8":
            return x
        nodes.append(helper.make_node("QuantizeLinear", [x, "xs", "xz"], [f"{x}_q"]))
        return f"{x}_q"

    x = "x"
    for i in range(layers):
        ctx = f"l{i}_ctx"
        if form == "fp32-qkv":
            qkv = np.concatenate([weight(hidden, hidden) for _ in range(3)], axis=1)
            inits.append(numpy_helper.from_array(qkv.astype(np.float32), f"l{i}_qkv"))
            inits.append(numpy_helper.from_array(np.zeros(3 * hidden, np.float32), f"l{i}_qkvb"))
            heads = attention["q_num_heads"]
            nodes.append(
                helper.make_node(
                    "Attention",
                    [x, f"l{i}_qkv", f"l{i}_qkvb", "lengths"],
                    [ctx],
                    domain="com.microsoft",
                    num_heads=heads,
                )
            )
        else:
            xq = quantized(x)
            qkv_out = [product(xq, hidden, hidden, f"l{i}_{p}") for p in "qkv"]
            nodes.append(helper.make_node("Attention", [*qkv_out, "mask"], [ctx], **attention))
        out = product(quantized(ctx), hidden, hidden, f"l{i}_o")
        up = product(quantized(out), hidden, inner, f"l{i}_up")
        x = product(quantized(up), inner, hidden, f"l{i}_down")
    if form == "int8":
        inits.append(numpy_helper.from_array(np.array(0.05, np.float32), "xs"))
        inits.append(numpy_helper.from_array(np.array(128, np.uint8), "xz"))
    mask = (
        helper.make_tensor_value_info("lengths", TensorProto.INT32, ["B"])
        if form == "fp32-qkv"
        else helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", 1, "L", "L"])
    )
    graph = helper.make_graph(
        nodes,
        f"floor-{form}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "L", hidden]), mask],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["B", "L", hidden])],
        inits,
    )
    opsets = [helper.make_opsetid("", 23), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10).SerializeToString()


def floor_candidate(form: str) -> Callable[[argparse.Namespace], EncodeFn]:
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
        max_length = seq_length(manifest, None)
        tokenizer = TextTokenizer.from_bytes(
            (artifact / manifest.tokenizer.file).read_bytes(),
            manifest.tokenizer.file,
            max_length,
            manifest.do_lower_case,
        )
        layers, hidden, inner, attention = floor_layout(artifact)
        model = floor_model(layers, hidden, inner, attention, form)
        so, extra = ort_session_options(SessionOptions(args.threads, args.spinning), "cpu")
        session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"], **extra)
        out = session.get_outputs()[0].name
        rng = np.random.default_rng(1)
        # one longest text's input made at load; a batch's grows it (worker.py's warm-up)
        values = rng.standard_normal(max_length * hidden).astype(np.float32)

        def run(b: int, length: int) -> None:
            nonlocal values
            if values.size < b * length * hidden:
                values = rng.standard_normal(b * length * hidden).astype(np.float32)
            feeds = {"x": values[: b * length * hidden].reshape(b, length, hidden)}
            if form == "fp32-qkv":
                feeds["lengths"] = np.full(b, length, np.int32)
            else:
                feeds["mask"] = np.zeros((b, 1, length, length), np.float32)
            # the output stays ONNX Runtime's: the real graphs return [B, dim], not [B, L, hidden]
            session.run_with_ort_values(
                [out], {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in feeds.items()}
            )

        def encode(texts: list[str], batch_size: int) -> np.ndarray:
            rows = tokenizer.tokenize(texts)
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                run(len(batch), max(map(len, batch)))
            return np.zeros((len(rows), 0), np.float32)  # a floor computes no vectors

        return encode

    return load
