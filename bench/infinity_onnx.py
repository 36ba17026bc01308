"""The ONNX folders infinity-emb 0.0.78's optimum engine serves, made offline from a
sentence-transformers folder. Runs under .venv-infinity (optimum 2.1.0); bench/serve_peers.py
--setup calls it.

    .venv-infinity/bin/python bench/infinity_onnx.py --st-model DIR --out DIR

What infinity reads (infinity_emb/transformer/embedder/optimum.py and utils_optimum.py), and so
the layout, one folder per precision, <out>/<precision>/model and <out>/<precision>/hub:

- It globs **/*.onnx under --model-id and on CPU prefers a name containing "quantize", else one
  containing "model.onnx"; it never quantizes by itself. fp32/model holds model.onnx (optimum's
  ORTModelForFeatureExtraction export, output last_hidden_state); int8/model holds
  model_quantized.onnx (optimum's ORTQuantizer, dynamic, AutoQuantizationConfig.avx512_vnni:
  the recipe sentence-transformers' export_dynamic_quantized_onnx_model uses, as bench/peers.py
  does). Each has config.json (AutoConfig) and the model's own tokenizer files (AutoTokenizer).
- It hands the path it globbed to optimum as file_name, and optimum 2.1 matches file_name against
  bare file names: a --model-id with any directory part fails with FileNotFoundError. So the
  server runs with its cwd in <precision>/model and --model-id ".".
- It then optimizes the graph (ORTOptimizer, level 99) into
  $HUGGINGFACE_HUB_CACHE/infinity_onnx/<provider>/<model-id>, or loads a *_optimized.onnx already
  there. Its call passes optimize_with_onnxruntime_only, which optimum 2.1 no longer accepts, so
  left alone it warns and serves the unoptimized graph. This script runs the same optimization in
  optimum 2.1's spelling (enable_transformers_specific_optimizations=True is what the old
  keyword's False meant) into <precision>/hub/infinity_onnx/<provider>, and the server gets
  HUGGINGFACE_HUB_CACHE=<precision>/hub (the legacy variable: huggingface_hub reads that one for
  HUGGINGFACE_HUB_CACHE): infinity finds the file, says "skipping optimization" and serves it,
  as it would with the optimum it was written against. The int8 file is optimized after
  quantizing, in that order, because that is the order infinity applies them.
- Pooling and length are not in the files: infinity pools by CLS unless --pooling-method mean,
  and tokenizes up to config.max_position_embeddings (512) where sentence-transformers stops at
  max_seq_length (256). serve_peers.py passes the flag; the length it can only report.

Last, each precision is loaded once through infinity's own OptimumEmbedder, in a child process
with the server's cwd and environment, and the script fails unless that picked the optimized file
and mean pooling.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

FILES = {"fp32": "model.onnx", "int8": "model_quantized.onnx"}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def optimized_name(precision: str) -> str:
    return FILES[precision].replace(".onnx", "_optimized.onnx")


def provider() -> str:
    """The execution provider infinity picks for --device cpu (its own function)."""
    from infinity_emb.primitives import Device
    from infinity_emb.transformer.utils_optimum import device_to_onnx

    return device_to_onnx(Device.cpu)


def is_prepared(out: Path) -> bool:
    return all(
        (out / p / "hub" / "infinity_onnx" / provider() / optimized_name(p)).is_file()
        for p in FILES
    )


def prepare(st_model: Path, out: Path) -> None:
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig, OptimizationConfig

    if not (st_model / "config.json").is_file():
        raise SystemExit(f"{st_model} has no config.json at its root (a transformer-first folder)")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    fp32 = ORTModelForFeatureExtraction.from_pretrained(st_model, export=True)
    fp32.save_pretrained(tmp / "fp32" / "model")
    ORTQuantizer.from_pretrained(fp32).quantize(
        AutoQuantizationConfig.avx512_vnni(is_static=False),
        save_dir=tmp / "int8" / "model",
        file_suffix="quantized",
    )
    # infinity_emb/transformer/utils_optimum.py's OptimizationConfig for a CPU provider.
    config = OptimizationConfig(
        optimization_level=99,
        enable_transformers_specific_optimizations=True,
        optimize_for_gpu=False,
        fp16=False,
    )
    for precision, name in FILES.items():
        folder = tmp / precision / "model"
        for f in TOKENIZER_FILES:  # the model's own, not the quantizer's re-serialized copy
            if (st_model / f).is_file():
                shutil.copy2(st_model / f, folder / f)
        model = ORTModelForFeatureExtraction.from_pretrained(folder, file_name=name)
        ORTOptimizer.from_pretrained(model).optimize(
            optimization_config=config,
            save_dir=tmp / precision / "hub" / "infinity_onnx" / provider(),
            one_external_file=True,
        )
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)


def server_env(out: Path, precision: str) -> dict[str, str]:
    return {"HUGGINGFACE_HUB_CACHE": str(out / precision / "hub")}


def check(out: Path) -> None:
    """Load each precision as the server does; fail unless infinity took the optimized graph."""
    code = (
        "from infinity_emb.args import EngineArgs\n"
        "from infinity_emb.transformer.embedder.optimum import OptimumEmbedder\n"
        "e = OptimumEmbedder(engine_args=EngineArgs(model_name_or_path='.', engine='optimum',"
        " device='cpu', pooling_method='mean'))\n"
        "print(e.model.path.name, e.pooling.__name__)\n"
    )
    for precision in FILES:
        env = dict(os.environ, HF_HUB_OFFLINE="1", INFINITY_ANONYMOUS_USAGE_STATS="0")
        env.update(server_env(out, precision))
        run = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", code],
            cwd=out / precision / "model",
            env=env,
            capture_output=True,
            text=True,
        )
        got = run.stdout.split()[-2:] if run.returncode == 0 else run.stderr[-2000:]
        want = [optimized_name(precision), "mean_pooling"]
        if got != want:
            raise SystemExit(f"infinity loaded {got} for {precision}, expected {want}")
        print(f"infinity optimum {precision}: loads {want[0]}, mean pooling")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--st-model", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--force", action="store_true", help="export again even if present")
    args = ap.parse_args()
    if args.force or not is_prepared(args.out):
        prepare(args.st_model.resolve(), args.out.resolve())
    check(args.out.resolve())


if __name__ == "__main__":
    main()
