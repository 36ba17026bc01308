"""GPU proof (issue 8): embedrt on CUDA (fp32, fp16, IO binding) and TensorRT (fp16, engine cache)
against sentence-transformers torch fp32/fp16 on the same GPU, checked against CPU fp32 embeddings.

    python bench/gpu.py dry-run --artifact A [--st-model DIR]    # here, on the CPU: same code path, small sizes
    python bench/gpu.py prepare --artifact A --st-model DIR --out I   # here: corpus, CPU fp32 references, torch model
    python bench/gpu.py run --artifact A --inputs I              # there, on the GPU (bench/stage_gpu.sh receive)

`run` writes $OUT/gpu_proof.json (sections saved as they finish, so a timeout keeps what ran) and
prints a table last. It exits 1 when an embedding check fails (fp16 min cosine < 0.9995, fp32 <
0.9999). The GPU machine has no embedrt install and no network: this file makes `import embedrt`
work from the checkout, and the torch baseline's weights are rebuilt from model.onnx's initializers
(bit-exact, per-tensor sha256 checked) so the 90 MB safetensors need not travel. See bench/GPU.md.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/: corpus.py and this file's siblings (gpu_*.py below), also when loaded by file path
sys.path.insert(0, str(ROOT / "bench"))


class _RepoPackages(importlib.abc.MetaPathFinder):
    """`embedrt` <- runtime/, `embedrt.export` <- export/ (pyproject's mapping), for a bare checkout."""

    FOLDERS = {"embedrt": ROOT / "runtime", "embedrt.export": ROOT / "export"}

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001
        folder = self.FOLDERS.get(name)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


if importlib.util.find_spec("embedrt") is None:  # not pip-installed (the GPU machine)
    sys.meta_path.insert(0, _RepoPackages())

# The proof lives in this file's sibling modules (see their docstrings).
from gpu_env import _ort, load_tensorrt, preload_cuda  # noqa: E402
from gpu_inputs import prepare  # noqa: E402
from gpu_report import checks, table  # noqa: E402, F401 - tests/runtime/test_gpu_dry_run.py: gpu.checks, gpu.table
from gpu_run import Run  # noqa: E402

# ---------------------------------------------------------------- entry points


def first_embedding(args: argparse.Namespace) -> None:
    """One fresh process: load and embed one text (TensorRT: engine built or read from the cache)."""
    t0 = time.perf_counter()
    ort = _ort()
    if not args.dry_run:
        preload_cuda(ort)
        load_tensorrt(list(ort.get_available_providers()))
    from embedrt import Encoder

    t1 = time.perf_counter()
    enc = Encoder.load(
        args.artifact,
        device=args.device,
        variant=args.variant,
        cache_dir=args.cache_dir,
        batch_tokens=args.batch_tokens,
    )
    t2 = time.perf_counter()
    enc.encode(["A man is playing a guitar."])
    t3 = time.perf_counter()
    print(
        json.dumps(
            {
                "import_s": round(t1 - t0, 3),
                "load_s": round(t2 - t1, 3),
                "first_embedding_s": round(t3 - t1, 3),
                "active_providers": list(enc.info.active_providers),
            }
        )
    )


def add_run_options(p: argparse.ArgumentParser, gpu_defaults: bool) -> None:
    p.add_argument("--artifact", type=Path, default=ROOT / "artifacts" / "all-MiniLM-L6-v2")
    p.add_argument(
        "--out", default=str(ROOT / "build" / "gpu-proof"), help="results folder when $OUT is unset"
    )
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "embedrt-gpu-work"))
    p.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 8, 32, 128, 512] if gpu_defaults else [1, 8, 32],
    )
    p.add_argument("--latency-n", type=int, default=500 if gpu_defaults else 8)
    p.add_argument("--repeats", type=int, default=3 if gpu_defaults else 1)
    p.add_argument("--min-seconds", type=float, default=1.0 if gpu_defaults else 0.0)
    p.add_argument(
        "--min-texts",
        type=int,
        default=256 if gpu_defaults else 8,
        help="texts per sweep point, at least",
    )
    p.add_argument(
        "--batch-tokens", type=int, default=16384, help="Encoder.load's padded-token budget"
    )
    p.add_argument("--threads", type=int, default=None if gpu_defaults else 2)
    p.add_argument(
        "--trt-timeout", type=int, default=240, help="seconds per TensorRT process (engine build)"
    )
    p.add_argument("--skip-trt", action="store_true")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--dry-texts", type=int, default=24, help="dry run: texts used from the corpus")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="here: corpus, CPU fp32 references, torch weights plan")
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--st-model", type=Path)
    p.add_argument(
        "--corpus", type=Path, help="jsonl with a 'text' field instead of the STS-B bench corpus"
    )
    p.add_argument("--texts", type=int, default=3000)
    p.add_argument("--ref-texts", type=int, default=1000)
    p.add_argument("--threads", type=int)
    p = sub.add_parser("run", help="the proof (on the GPU; --dry-run on the CPU)")
    add_run_options(p, gpu_defaults=True)
    p.add_argument("--inputs", type=Path, required=True)
    p.add_argument(
        "--dry-run", action="store_true", help="device cpu instead of cuda/tensorrt, small sizes"
    )
    p = sub.add_parser("dry-run", help="prepare small inputs, then run --dry-run, on the CPU")
    add_run_options(p, gpu_defaults=False)
    p.add_argument("--st-model", type=Path)
    p.add_argument("--corpus", type=Path)
    p.add_argument(
        "--inputs", type=Path, help="use prepared inputs (e.g. .gpu/payload/inputs) instead"
    )
    p = sub.add_parser(
        "first-embedding", help="internal: one fresh process for the TensorRT cache check"
    )
    for flag in ("--artifact", "--device", "--variant", "--cache-dir"):
        p.add_argument(flag, required=True)
    p.add_argument("--batch-tokens", type=int, default=16384)
    p.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()

    if args.cmd == "prepare":
        prepare(
            args.artifact,
            args.out,
            st_model=args.st_model,
            corpus=args.corpus,
            texts=args.texts,
            ref_texts=args.ref_texts,
            threads=args.threads,
        )
    elif args.cmd == "first-embedding":
        first_embedding(args)
    else:
        if args.cmd == "dry-run":
            args.dry_run = True
            if args.inputs is None:
                args.inputs = Path(args.work) / "inputs"
                shutil.rmtree(args.inputs, ignore_errors=True)
                prepare(
                    args.artifact,
                    args.inputs,
                    st_model=args.st_model,
                    corpus=args.corpus,
                    texts=args.dry_texts,
                    ref_texts=args.dry_texts // 2,
                    threads=args.threads,
                )
        sys.exit(Run(args).main())


if __name__ == "__main__":
    main()
