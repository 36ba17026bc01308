"""SmoothQuant's alpha for the int8 variant: quality against fp32 and speed, per model, one run.

For each artifact given, its fp32 model.onnx is quantized as the export does (export/quantize.py:
static, per-channel, MinMax on the shipped calibration text, MatMulIntegerToFloat) without
smoothing and with each alpha, then every candidate and fp32 encode the same held-out texts:

- quality: cosine to fp32 (median, 1st percentile, min) over STS-B test's first sentences, and
  top-1 nearest-neighbour agreement with fp32 (those sentences as queries, the second
  sentences as the corpus);
- speed: texts/s over the same texts, batch 32, sorted by length, 2 threads, fresh sessions in
  interleaved rounds (median of --rounds), as a ratio to fp32 in the same run.

    python bench/int8_smooth.py --artifact artifacts/all-MiniLM-L6-v2 \\
        --artifact /tmp/mpnet --out bench/results/int8_smooth
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from machine import describe  # bench/machine.py (this script runs from bench/)

from embedrt import load_manifest
from embedrt.export.datasets import load_stsb
from embedrt.export.quantize import quantize_int8
from embedrt.tokenizer import TextTokenizer, pad_rows

ALPHAS = (None, 0.5, 0.7, 0.85)


def encode(
    path: str, rows: list[list[int]], pad_id: int, batch: int = 32
) -> tuple[np.ndarray, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    order = np.argsort([len(r) for r in rows], kind="stable")
    vecs = []
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        chunk = [rows[j] for j in order[i : i + batch]]
        ids, mask = pad_rows(chunk, max(map(len, chunk)), pad_id)
        vecs.append(session.run(None, {"input_ids": ids, "attention_mask": mask})[0])
    seconds = time.perf_counter() - start
    out = np.empty((len(rows), vecs[0].shape[1]), np.float32)
    out[order] = np.concatenate(vecs)
    return out, seconds


def quality(fp32: np.ndarray, vecs: np.ndarray, n_queries: int) -> dict[str, float]:
    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    cos = (unit(fp32) * unit(vecs)).sum(1)
    q_ref, c_ref = unit(fp32[:n_queries]), unit(fp32[n_queries:])
    q, c = unit(vecs[:n_queries]), unit(vecs[n_queries:])
    top1 = float(((q_ref @ c_ref.T).argmax(1) == (q @ c.T).argmax(1)).mean())
    return {
        "median_cosine": round(float(np.median(cos)), 5),
        "p1_cosine": round(float(np.percentile(cos, 1)), 5),
        "min_cosine": round(float(cos.min()), 5),
        "top1_agreement": round(top1, 4),
    }


def bench_model(artifact: Path, rounds: int, texts: int) -> dict:
    manifest = load_manifest(artifact)
    test = load_stsb("test")
    queries = list(dict.fromkeys(test.first))[: texts // 2]
    corpus = list(dict.fromkeys(test.second))[: texts // 2]
    tok = TextTokenizer.load(artifact / manifest.tokenizer.file, manifest.max_seq_length)
    rows = tok.tokenize(queries + corpus)
    files = {"fp32": str(artifact / "model.onnx")}
    tmp = Path(tempfile.mkdtemp(prefix="int8_smooth-"))
    build = {}
    for alpha in ALPHAS:
        name = "int8" if alpha is None else f"int8-smooth-{alpha}"
        start = time.perf_counter()
        quantize_int8(
            artifact / "model.onnx",
            tmp / f"{name}.onnx",
            artifact / manifest.tokenizer.file,
            manifest.max_seq_length,
            pad_id=manifest.pad_token_id,
            alpha=alpha,
        )
        build[name] = round(time.perf_counter() - start, 1)
        files[name] = str(tmp / f"{name}.onnx")
    seconds: dict[str, list[float]] = {name: [] for name in files}
    vectors = {}
    for _ in range(rounds):  # interleaved: drift hits every candidate alike
        for name, path in files.items():
            vectors[name], took = encode(path, rows, manifest.pad_token_id)
            seconds[name].append(took)
    fp32_tps = len(rows) / statistics.median(seconds["fp32"])
    result = {}
    for name in files:
        tps = len(rows) / statistics.median(seconds[name])
        result[name] = {
            "texts_per_s": round(tps, 1),
            "vs_fp32": round(tps / fp32_tps, 2),
            "quantize_s": build.get(name),
            **(quality(vectors["fp32"], vectors[name], len(queries)) if name != "fp32" else {}),
        }
    return {"model": manifest.source.get("model"), "texts": len(rows), "candidates": result}


def write(results: list[dict], out: Path, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [
        "# int8 with and without SmoothQuant",
        "",
        f"Command: `{command}`",
        f"Machine: {describe()}, 2 ONNX Runtime threads;"
        " plain onnxruntime sessions (no embedrt session options), batch 32 sorted by length.",
        "Quality against the model's own fp32 graph on held-out STS-B test sentences (queries:"
        " first sentences, corpus: second sentences). Speed: median of interleaved rounds,"
        " ratio to fp32 in the same run.",
        "",
    ]
    for r in results:
        lines += [
            f"## {r['model']} ({r['texts']} texts)",
            "",
            "| candidate | texts/s | vs fp32 | median cos | p1 cos | min cos | top-1 NN | quantize s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, c in r["candidates"].items():
            lines.append(
                f"| {name} | {c['texts_per_s']} | {c['vs_fp32']}x | {c.get('median_cosine', '-')} "
                f"| {c.get('p1_cosine', '-')} | {c.get('min_cosine', '-')} "
                f"| {c.get('top1_agreement', '-')} | {c.get('quantize_s') or '-'} |"
            )
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--artifact", action="append", required=True, help="exported artifact(s)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--out", default="bench/results/int8_smooth")
    args = p.parse_args()
    results = [bench_model(Path(a), args.rounds, args.texts) for a in args.artifact]
    write(results, Path(args.out), "python " + " ".join(sys.argv))
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
