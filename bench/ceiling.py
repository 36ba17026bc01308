"""What fraction of this machine's compute limit each engine reaches, and the plot of the run.

    python bench/ceiling.py --throughput bench/results/throughput.json --out bench/results/ceiling

Measures the matmul ceiling with ONNX Runtime itself on model-sized matmuls (tokens x 384 times
384 x 1536, MiniLM's FFN shape): fp32 MatMul and int8 MatMulInteger, 2 threads, best of runs.
Counts the model's work per token: 2 x (4 x h^2 + 2 x h x ffn) multiply-adds per layer for the
linear layers plus 2 x 2 x seq x h for attention's scores and mix, at the corpus' mean length.
Writes JSON + markdown, and a PNG of throughput per candidate when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

LAYERS, HIDDEN, FFN = 6, 384, 1536  # all-MiniLM-L6-v2


def matmul_ceiling(dtype: str, tokens: int = 4096, threads: int = 2, runs: int = 20) -> float:
    """Best observed ops/s of a tokens x HIDDEN @ HIDDEN x FFN matmul in ONNX Runtime."""
    rng = np.random.default_rng(0)
    if dtype == "fp32":
        w = numpy_helper.from_array(rng.standard_normal((HIDDEN, FFN)).astype(np.float32), "w")
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        x = rng.standard_normal((tokens, HIDDEN)).astype(np.float32)
    else:
        w = numpy_helper.from_array(rng.integers(-127, 127, (HIDDEN, FFN)).astype(np.int8), "w")
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
        x_type, y_type = TensorProto.UINT8, TensorProto.INT32
        x = rng.integers(0, 255, (tokens, HIDDEN)).astype(np.uint8)
    graph = helper.make_graph(
        [node],
        "mm",
        [helper.make_tensor_value_info("x", x_type, [tokens, HIDDEN])],
        [helper.make_tensor_value_info("y", y_type, [tokens, FFN])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {"x": x})
        best = min(best, time.perf_counter() - t)
    return 2 * tokens * HIDDEN * FFN / best


def flops_per_token(mean_len: float) -> float:
    linear = 2 * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)
    attention = 2 * 2 * mean_len * HIDDEN
    return LAYERS * (linear + attention)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--throughput", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    run = json.loads(args.throughput.read_text())
    mean_len = run["tokens"] / run["texts"]
    per_token = flops_per_token(mean_len)
    fp32, int8 = matmul_ceiling("fp32"), matmul_ceiling("int8")
    rows = {}
    for name, r in run["results"].items():
        if "tokens_per_s" not in r:
            continue
        achieved = r["tokens_per_s"] * per_token
        ceiling = int8 if "int8" in name else fp32
        rows[name] = {
            "tokens_per_s": r["tokens_per_s"],
            "achieved_gflops": round(achieved / 1e9, 1),
            "ceiling_gflops": round(ceiling / 1e9, 1),
            "fraction_of_ceiling": round(achieved / ceiling, 3),
        }
    result = {
        "mean_tokens": round(mean_len, 1),
        "mflop_per_token": round(per_token / 1e6, 2),
        "fp32_matmul_gflops": round(fp32 / 1e9, 1),
        "int8_matmul_gops": round(int8 / 1e9, 1),
        "results": rows,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"MiniLM: {result['mflop_per_token']} MFLOP per token at the corpus' mean "
        f"{result['mean_tokens']} tokens; ONNX Runtime matmul ceiling on 2 threads: "
        f"fp32 {result['fp32_matmul_gflops']} GFLOP/s, int8 {result['int8_matmul_gops']} GOP/s",
        "",
        "| candidate | tokens/s | achieved GFLOP/s | ceiling | fraction |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['tokens_per_s']} | {v['achieved_gflops']} | {v['ceiling_gflops']} | "
        f"{v['fraction_of_ceiling']:.1%} |"
        for k, v in rows.items()
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = list(run["results"])
    values = [run["results"][n].get("texts_per_s", 0) for n in names]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh(
        names[::-1],
        values[::-1],
        color=["#3b7dd8" if n.startswith("embedrt") else "#999999" for n in names[::-1]],
    )
    ax.set_xlabel("texts/s (higher is better)")
    ax.set_title(
        f"{run['texts']} {run.get('corpus', 'long-tail')} texts, batch {run['batch_size']}, "
        f"{run['threads']} threads, spinning {run.get('spinning', 'off')}, CPU"
    )
    fig.tight_layout()
    fig.savefig(args.throughput.with_suffix(".png"), dpi=100)  # next to the run it plots


if __name__ == "__main__":
    main()
