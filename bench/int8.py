"""Which int8 scheme: ONNX Runtime's dynamic quantization (batch-dependent) against static
quantization (embedrt's int8: the artifact's model_int8.onnx, fp32 outputs; the same graph with
torch's attention nodes instead of ONNX's Attention, as before export/attention.py; and ONNX
Runtime's plain static QOperator graph, uint8 outputs) and MatMulNBits 8-bit, side by side in one
process on the same corpus, with fp32 and opt as baselines.

    python bench/int8.py --artifact artifacts/all-MiniLM-L6-v2 --out bench/results/int8

For each candidate: throughput on STS-B dev sentences at batch 32 (best of --rounds, candidates
interleaved so a noisy neighbour hits all alike), min/mean cosine to fp32, batch invariance (each
text alone vs inside its batch: min cosine), and Spearman of cosine on STS-B dev. Every session
is made with embedrt's CPU session options (session.py), so it leaves out the same load-time
fusions.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from machine import describe  # bench/machine.py (this script runs from bench/)
from scipy.stats import spearmanr

from embedrt.batching import BatchPlan, plan_batches
from embedrt.export.datasets import load_stsb
from embedrt.export.optimize import Geometry, optimize
from embedrt.export.quantize import linear_matmuls, quantize_int8
from embedrt.session import SPINNING, SessionOptions, ort_session_options
from embedrt.tokenizer import TextTokenizer, pad_rows

GEOMETRY = Geometry(layers=6, heads=12, hidden=384)  # all-MiniLM-L6-v2


def build_candidates(artifact: Path, work: Path, calib_rows: list[list[int]]) -> dict[str, Path]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    plain = artifact / "model.onnx"
    files = {"fp32": plain, "opt": artifact / "model_opt.onnx"}
    no_eln = work / "opt_no_eln.onnx"
    optimize(plain, no_eln, GEOMETRY, embed_layer_norm=False)
    for pc, rr in ((False, False), (True, False), (True, True)):
        name = f"dynamic per_channel={int(pc)} reduce_range={int(rr)}"
        files[name] = work / f"dyn_{int(pc)}{int(rr)}.onnx"
        quantize_dynamic(
            no_eln,
            files[name],
            per_channel=pc,
            reduce_range=rr,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self):
            if self.i >= len(calib_rows):
                return None
            rows = calib_rows[self.i : self.i + 32]
            self.i += 32
            ids, mask = pad_rows(rows, max(map(len, rows)), 0)
            return {"input_ids": ids, "attention_mask": mask}

    linear = linear_matmuls(onnx.load(str(plain)).graph)
    ffn_out = [n for n in linear if "/output/dense" in n and "attention" not in n]
    name = "static minmax, FFN output in fp32"
    files[name] = work / "static_no_ffn_out.onnx"
    quantize_static(
        plain,
        files[name],
        Reader(),
        quant_format=QuantFormat.QOperator,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=[n for n in linear if n not in ffn_out],
        calibrate_method=CalibrationMethod.MinMax,
    )
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    nbits = MatMulNBitsQuantizer(
        onnx.load(str(plain)),
        algo_config=DefaultWeightOnlyQuantConfig(
            block_size=32, is_symmetric=True, accuracy_level=4, bits=8
        ),
    )  # int8 compute, per-row blocks
    nbits.process()
    files["MatMulNBits 8-bit, block 32"] = work / "nbits.onnx"
    nbits.model.save_model_to_file(str(files["MatMulNBits 8-bit, block 32"]))
    name = "static minmax, all linear, uint8 outputs (QLinearMatMul)"
    files[name] = work / "static_uint8_out.onnx"
    quantize_int8(plain, files[name], artifact / "tokenizer.json", 256, float_outputs=False)
    name = "static minmax, all linear, fp32 outputs, torch's attention nodes"
    files[name] = work / "static_torch_attention.onnx"
    quantize_int8(plain, files[name], artifact / "tokenizer.json", 256, attention=False)
    files["static minmax, all linear, fp32 outputs (embedrt int8)"] = artifact / "model_int8.onnx"
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spinning", choices=SPINNING, default=SessionOptions.spinning)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    tok = TextTokenizer.load(args.artifact / "tokenizer.json", 256)
    dev = load_stsb("dev")
    texts = list(dict.fromkeys(dev.first + dev.second))
    rows = tok.tokenize(texts)
    lengths = np.array([len(r) for r in rows])
    batches = plan_batches(lengths, BatchPlan(max_tokens=16384, max_rows=32))
    train = load_stsb("train")
    calib = tok.tokenize(list(dict.fromkeys(train.first))[:512])

    def run(sess: ort.InferenceSession, plan: list[np.ndarray]) -> np.ndarray:
        out = np.empty((len(rows), 384), np.float32)
        for idx in plan:
            ids, mask = pad_rows([rows[i] for i in idx], int(lengths[idx].max()), 0)
            out[idx] = sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})[
                0
            ]
        return out

    with tempfile.TemporaryDirectory() as tmp:
        files = build_candidates(args.artifact, Path(tmp), calib)
        sessions = {}
        for name, path in files.items():
            so, extra = ort_session_options(SessionOptions(args.threads, args.spinning), "cpu")
            sessions[name] = ort.InferenceSession(
                str(path), so, providers=["CPUExecutionProvider"], **extra
            )
        best = {name: 0.0 for name in files}
        outputs = {}
        for _ in range(args.rounds):
            for name, sess in sessions.items():
                t = time.perf_counter()
                outputs[name] = run(sess, batches)
                best[name] = max(best[name], len(rows) / (time.perf_counter() - t))
        sub = np.arange(0, len(rows), 15)[:200]
        index = {t: i for i, t in enumerate(texts)}
        a_idx = [index[t] for t in dev.first]
        b_idx = [index[t] for t in dev.second]

        def cos(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)

        results = {}
        ref = outputs["fp32"]
        for name, sess in sessions.items():
            out = outputs[name]
            alone = run(sess, [np.array([i]) for i in sub])[sub]
            results[name] = {
                "texts_per_s": round(best[name], 1),
                "speed_vs_fp32": round(best[name] / best["fp32"], 2),
                "min_cosine_vs_fp32": round(float(cos(out, ref).min()), 5),
                "mean_cosine_vs_fp32": round(float(cos(out, ref).mean()), 6),
                "batch_invariance_min_cosine": round(float(cos(alone, out[sub]).min()), 7),
                "stsb_dev_spearman": round(
                    float(spearmanr(cos(out[a_idx], out[b_idx]), dev.scores).statistic), 4
                ),
            }
    dyn = max(v["texts_per_s"] for k, v in results.items() if k.startswith("dynamic"))
    for v in results.values():
        v["speed_vs_fastest_dynamic"] = round(v["texts_per_s"] / dyn, 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps(
            {
                "texts": len(rows),
                "batch_size": 32,
                "threads": args.threads,
                "spinning": args.spinning,
                "rounds": args.rounds,
                "machine": describe(),
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    cols = [
        "texts_per_s",
        "speed_vs_fp32",
        "speed_vs_fastest_dynamic",
        "min_cosine_vs_fp32",
        "batch_invariance_min_cosine",
        "stsb_dev_spearman",
    ]
    lines = [
        "# int8 schemes side by side (bench/int8.py)",
        "",
        f"`python bench/int8.py --artifact {args.artifact} --out {args.out}`: {len(rows)} STS-B "
        f"dev texts at batch 32, {args.threads} threads, spinning {args.spinning}, best of "
        f"{args.rounds} interleaved rounds; {describe()}",
        "",
        "| scheme | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    lines += [f"| {k} | " + " | ".join(str(v[c]) for c in cols) + " |" for k, v in results.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
