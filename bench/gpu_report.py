"""The GPU proof's verdict (bench/gpu.py): the gates (embedding parity, GPU provider placement)
and the issue's targets computed from the report's rows, and the table printed last.
"""

from __future__ import annotations

from typing import Any

FP16_MIN_COSINE = 0.9995  # issue 8
FP32_MIN_COSINE = 0.9999  # fp32 on another device: kernel order, and TF32 where a provider uses it
TORCH_MIN_COSINE = {
    "fp32": 0.9999,
    "fp16": 0.999,
}  # the baseline must be the same model, not a broken one
HEAVY_OPS = {
    "MatMul",
    "Gemm",
    "FusedMatMul",
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "Softmax",
}  # must not run on the CPU in a GPU session
TARGET_SPEEDUP_BS32 = 2.0  # embedrt fp16 CUDA vs torch fp16, texts/s at batch 32
TARGET_P50_MS = 1.0  # embedrt fp16 CUDA, one sentence


def checks(rows: list[dict[str, Any]], dev: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Gates (embeddings right, GPU provider really running the graph) and the issue's targets."""
    by_name = {r["name"]: r for r in rows}
    gates = []
    for r in rows:
        if r["engine"] == "embedrt":
            limit = FP16_MIN_COSINE if r["precision"] == "fp16" else FP32_MIN_COSINE
        else:
            limit = TORCH_MIN_COSINE[r["precision"]]
        got = r["parity_vs_cpu_fp32"]["min_cosine"]
        gates.append(
            {
                "what": f"{r['name']} min cosine vs CPU fp32",
                "got": got,
                "limit": limit,
                "pass": got >= limit,
            }
        )
    for r in rows:  # the GPU provider runs the graph, not just heads the provider list
        place = r.get("placement")
        if r["device"] == "cpu" or not place:
            continue
        provider = r["active_providers"][0]
        nodes = place.get(provider, {}).get("nodes", 0)
        on_cpu = sorted(set(place.get("CPUExecutionProvider", {}).get("ops", {})) & HEAVY_OPS)
        gates.append(
            {
                "what": f"{r['name']} nodes on {provider}, heavy ops on the CPU",
                "got": f"{nodes}, {', '.join(on_cpu) or 'none'}",
                "limit": "> 0, none",
                "pass": nodes > 0 and not on_cpu,
            }
        )
    ours, theirs = by_name.get(f"embedrt fp16 {dev}"), by_name.get(f"torch fp16 {dev}")
    targets = {}
    if ours and theirs and "32" in ours["throughput"] and "32" in theirs["throughput"]:
        ratio = ours["throughput"]["32"]["texts_per_s"] / theirs["throughput"]["32"]["texts_per_s"]
        targets["fp16_speedup_vs_torch_fp16_bs32"] = {
            "got": round(ratio, 2),
            "target": TARGET_SPEEDUP_BS32,
            "met": ratio >= TARGET_SPEEDUP_BS32,
        }
    if ours:
        p50 = ours["latency_single_ms"]["p50"]
        targets["fp16_single_p50_ms"] = {
            "got": p50,
            "target": TARGET_P50_MS,
            "met": p50 < TARGET_P50_MS,
        }
    return gates, targets


def table(data: dict[str, Any]) -> str:
    rows = data["rows"]
    sizes = [str(b) for b in data["config"]["batch_sizes"]]
    env = data["environment"]
    torch_info = data.get("torch", {})
    head = (
        f"GPU proof: {env.get('gpu') or 'no GPU'} | {env['onnxruntime_package']} {env['onnxruntime']} "
        f"| torch {torch_info.get('torch', '-')} (CUDA {torch_info.get('cuda', '-')})"
    )
    lines = [head]
    if data["dry_run"]:
        lines.append("DRY RUN on the CPU: every step ran with device cpu; numbers are not claims")
    short = {
        "TensorrtExecutionProvider": "TRT",
        "CUDAExecutionProvider": "CUDA",
        "CPUExecutionProvider": "CPU",
    }
    cols = (
        f"{'candidate':<24} {'providers':<13} {'cpu nodes':>9} {'min cos':>9} "
        + " ".join(f"{'bs' + s:>8}" for s in sizes)
        + f" {'p50 ms':>7} {'p99 ms':>7}"
    )
    lines += ["texts/s per batch size; p50/p99: one text per call", cols, "-" * len(cols)]
    for r in rows:
        prov = ",".join(short.get(p, p) for p in r.get("active_providers", [])) or r["device"]
        place = r.get("placement")
        cpu_nodes = str(place.get("CPUExecutionProvider", {}).get("nodes", 0)) if place else "-"
        tput = " ".join(f"{r['throughput'].get(s, {}).get('texts_per_s', '-'):>8}" for s in sizes)
        lat = r["latency_single_ms"]
        lines.append(
            f"{r['name']:<24} {prov:<13} {cpu_nodes:>9} {r['parity_vs_cpu_fp32']['min_cosine']:>9.6f} "
            f"{tput} {lat['p50']:>7.2f} {lat['p99']:>7.2f}"
        )
    trt = data.get("tensorrt")
    if trt and trt.get("processes"):
        lines.append(
            f"TensorRT engine cache: first process {trt.get('build_s')} s to first embedding (build), "
            f"second {trt.get('reuse_s')} s; {trt.get('engine_files')} engine file(s); "
            f"cache untouched by the second process: {trt.get('cache_unchanged_by_second')}"
        )
    for key, t in data.get("targets", {}).items():
        lines.append(
            f"target {key}: {t['got']} (target {'>=' if 'speedup' in key else '<'} {t['target']}): "
            f"{'MET' if t['met'] else 'NOT MET'}"
        )
    for g in data.get("gates", []):
        op = ">=" if isinstance(g["limit"], float) else "vs"
        lines.append(
            f"check {g['what']}: {g['got']} {op} {g['limit']}: {'PASS' if g['pass'] else 'FAIL'}"
        )
    for s in data["skipped"]:
        lines.append(f"skipped {s['what']}: {s['why'][:300]}")
    return "\n".join(lines)
