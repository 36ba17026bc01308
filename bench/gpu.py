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
import contextlib
import ctypes
import glob
import hashlib
import importlib
import importlib.abc
import importlib.util
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from corpus import read_corpus, write_corpus  # noqa: E402


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

FP16_MIN_COSINE = 0.9995  # issue 8
FP32_MIN_COSINE = 0.9999  # fp32 on another device: kernel order, and TF32 where a provider uses it
TORCH_MIN_COSINE = {"fp32": 0.9999, "fp16": 0.999}  # the baseline must be the same model, not a broken one
HEAVY_OPS = {"MatMul", "Gemm", "FusedMatMul", "Attention", "MultiHeadAttention", "SkipLayerNormalization",
             "LayerNormalization", "Softmax"}  # must not run on the CPU in a GPU session
TARGET_SPEEDUP_BS32 = 2.0  # embedrt fp16 CUDA vs torch fp16, texts/s at batch 32
TARGET_P50_MS = 1.0  # embedrt fp16 CUDA, one sentence
CUDA_LIBS = ("libcublasLt.so.{M}", "libcublas.so.{M}", "libcudart.so.{M}", "libcurand.so.10", "libcudnn.so.9")
TRT_LIBS = ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10")


def log(msg: str) -> None:
    print(f"[gpu.py] {msg}", flush=True)


# ---------------------------------------------------------------- the torch baseline's weights


def tensor_sha256(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def weights_from_onnx(onnx_path: Path) -> dict[str, np.ndarray]:
    """The BERT state dict inside the exported graph (keys as in the model's safetensors).

    torch.onnx.export keeps named parameters under the wrapper's "transformer." prefix and stores
    each Linear weight transposed as an anonymous MatMul input; the Add after that MatMul names
    the layer through its bias.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name: t for t in graph.initializer}
    prefix = "transformer."
    out = {n[len(prefix):]: numpy_helper.to_array(t) for n, t in inits.items() if n.startswith(prefix)}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or node.input[1].startswith(prefix):
            continue
        biases = [i for c in consumers.get(node.output[0], []) if c.op_type == "Add"
                  for i in c.input if i.startswith(prefix) and i.endswith(".bias")]
        if len(biases) != 1:
            raise ValueError(f"MatMul {node.name!r}: expected one bias Add after it, found {biases}")
        weight = numpy_helper.to_array(inits[node.input[1]]).T
        # contiguous: safetensors writes an array's buffer as is, and .T is a column-major view
        out[biases[0][len(prefix):-len(".bias")] + ".weight"] = np.ascontiguousarray(weight)
    return out


def stage_st_model(st_model: Path, onnx_path: Path, out: Path) -> dict[str, Any]:
    """out/st (the folder without weights), out/st_rest.safetensors (tensors the graph lacks:
    pooler, position_ids), out/st_tensors.json (sha256 of every original tensor); then rebuilds
    once to prove the rebuild is bit-exact."""
    from safetensors.numpy import load_file, save_file

    weights = st_model / "model.safetensors"
    if not weights.is_file():
        raise SystemExit(f"{st_model} has no model.safetensors (the rebuild reads safetensors only)")
    skip = shutil.ignore_patterns("*.safetensors", "*.bin", "*.pt", "*.h5", "*.msgpack", "onnx", "openvino",
                                  "README.md", ".gitattributes")
    shutil.copytree(st_model, out / "st", ignore=skip, dirs_exist_ok=True)
    original = load_file(str(weights))
    derived = weights_from_onnx(onnx_path)
    extra = sorted(set(derived) - set(original))
    if extra:
        raise SystemExit(f"graph tensors not in {weights}: {extra[:5]}")
    rest = {k: v for k, v in original.items() if k not in derived}
    save_file(rest, str(out / "st_rest.safetensors"))
    (out / "st_tensors.json").write_text(json.dumps(
        {k: tensor_sha256(v) for k, v in sorted(original.items())}, indent=0))
    with tempfile.TemporaryDirectory() as tmp:
        rebuild_st_model(out, onnx_path, Path(tmp) / "st")
    return {"tensors": len(original), "from_graph": len(derived), "carried": sorted(rest)}


def rebuild_st_model(inputs: Path, onnx_path: Path, dest: Path) -> Path:
    """The sentence-transformers folder with model.safetensors rebuilt from the graph + the rest."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(inputs / "st", dest, dirs_exist_ok=True)
    tensors = {**weights_from_onnx(onnx_path), **load_file(str(inputs / "st_rest.safetensors"))}
    expected = json.loads((inputs / "st_tensors.json").read_text())
    got = {k: tensor_sha256(v) for k, v in tensors.items()}
    if got != expected:
        bad = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        raise SystemExit(f"rebuilt torch weights differ from the original in {len(bad)} tensors: {bad[:5]}")
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


# ---------------------------------------------------------------- prepare (here, on the CPU)


def fallback_sentences() -> list[str]:
    return ["A man is playing a guitar.", "Someone plays an instrument.", "The cat sits on the mat.",
            "Stocks fell sharply on Monday after the announcement.", "A woman is slicing an onion.",
            "The quick brown fox jumps over the lazy dog. " * 30, "", "Ünïcödé text, emoji 🙂 and CJK 漢字."]


def prepare(artifact: Path, out: Path, *, st_model: Path | None, corpus: Path | None, texts: int,
            ref_texts: int, threads: int | None) -> None:
    from embedrt import Encoder, load_manifest

    out.mkdir(parents=True, exist_ok=True)
    if corpus:
        corpus_texts = read_corpus(corpus)[:texts]
    else:
        try:
            from corpus import build_corpus

            corpus_texts = build_corpus(texts)
        except Exception as e:  # STS-B not installed: say so, keep going
            log(f"bench corpus unavailable ({type(e).__name__}: {e}); using built-in sentences")
            corpus_texts = (fallback_sentences() * (texts // 8 + 1))[:texts]
    write_corpus(out / "corpus.jsonl", corpus_texts)
    ref_list = corpus_texts[:ref_texts]
    t = time.perf_counter()
    enc = Encoder.load(artifact, device="cpu", variant="fp32", threads=threads)
    np.save(out / "reference.npy", enc.encode(ref_list, batch_size=32))
    variant = load_manifest(artifact).variant("fp32")
    meta = {"artifact_variant": "fp32", "file": variant.file, "sha256": variant.sha256,
            "texts": len(ref_list), "batch_size": 32, "device": "cpu",
            "onnxruntime": _ort().__version__, "seconds": round(time.perf_counter() - t, 2)}
    if st_model:
        meta["torch_weights"] = stage_st_model(st_model, artifact / variant.file, out)
    (out / "reference.json").write_text(json.dumps(meta, indent=1))
    log(f"prepared {out}: {len(corpus_texts)} texts, {len(ref_list)} CPU fp32 references"
        + (f", torch weights rebuilt bit-exact from {variant.file}" if st_model else ""))


# ---------------------------------------------------------------- libraries and environment


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


def _ort_package(ort: Any) -> Any:
    """onnxruntime.capi.build_and_package_info: package name and the CUDA version it was built for."""
    try:
        return importlib.import_module("onnxruntime.capi.build_and_package_info")
    except ImportError:
        return argparse.Namespace()


def _loaded(lib: str) -> bool:
    with open("/proc/self/maps") as f:
        return f"/{lib}" in f.read()


def preload_cuda(ort: Any) -> dict[str, Any]:
    """Make the CUDA libraries of the image's nvidia pip packages visible to ONNX Runtime.

    preload_dlls() looks for them next to onnxruntime's own site-packages; on the GPU machine
    onnxruntime-gpu sits in /tmp/site while the nvidia packages sit in the image's venv, so
    missing ones are then loaded from every nvidia/*/lib folder on sys.path.
    """
    rec: dict[str, Any] = {}
    major = str(getattr(_ort_package(ort), "cuda_version", "13") or "13").split(".")[0]
    wanted = [name.format(M=major) for name in CUDA_LIBS]
    if hasattr(ort, "preload_dlls"):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            try:
                ort.preload_dlls()
            except Exception as e:  # noqa: BLE001 - recorded, the next step may still work
                print(f"{type(e).__name__}: {e}")
        rec["preload_dlls"] = buf.getvalue().strip() or "ok"
    else:
        rec["preload_dlls"] = "absent in this onnxruntime"
    missing = [lib for lib in wanted if not _loaded(lib)]
    found = []
    for lib in missing:
        for entry in sys.path:
            hits = sorted(glob.glob(os.path.join(entry or ".", "nvidia", "*", "lib", lib)))
            if hits:
                with contextlib.suppress(OSError):
                    ctypes.CDLL(hits[0], mode=ctypes.RTLD_GLOBAL)
                    found.append(hits[0])
                break
    rec["loaded_from_nvidia_dirs"] = found
    rec["still_missing"] = [lib for lib in wanted if not _loaded(lib)]
    return rec


def load_tensorrt(available: list[str]) -> tuple[bool, str]:
    if "TensorrtExecutionProvider" not in available:
        return False, "this onnxruntime has no TensorrtExecutionProvider"
    folders = [""]
    with contextlib.suppress(ImportError):
        import tensorrt_libs  # the tensorrt-cu13-libs wheel

        folders.append(os.path.dirname(tensorrt_libs.__file__))
    errors = []
    for folder in folders:
        try:
            for lib in TRT_LIBS:
                ctypes.CDLL(os.path.join(folder, lib) if folder else lib, mode=ctypes.RTLD_GLOBAL)
            return True, f"TensorRT libraries loaded from {folder or 'the default search path'}"
        except OSError as e:
            errors.append(str(e))
    return False, ("TensorrtExecutionProvider is listed (it is compiled in) but the TensorRT 10 libraries "
                   f"do not load: {errors[-1]}. Install tensorrt-cu13-libs 10.x (the 'tensorrt' extra).")


def environment(ort: Any, gpu: bool) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0], "platform": platform.platform(), "numpy": np.__version__,
        "onnxruntime": ort.__version__, "onnxruntime_file": ort.__file__,
        "onnxruntime_package": getattr(_ort_package(ort), "package_name", "onnxruntime"),
        "onnxruntime_cuda_version": getattr(_ort_package(ort), "cuda_version", None),
        "available_providers": list(ort.get_available_providers()),
        "cpus": len(os.sched_getaffinity(0)),
    }
    with contextlib.suppress(Exception):
        env["onnxruntime_build"] = ort.get_build_info()
    for pkg in ("tokenizers", "sentence_transformers", "transformers", "torch"):
        spec = importlib.util.find_spec(pkg)
        env[pkg] = _version(pkg) if spec else None
    if shutil.which("nvidia-smi"):
        q = "name,driver_version,memory.total,clocks.max.sm,compute_cap"
        r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        env["gpu"] = r.stdout.strip() or r.stderr.strip()
    elif gpu:
        env["gpu"] = "nvidia-smi not found"
    if shutil.which("ldconfig"):
        r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30)
        env["ldconfig_nvinfer"] = [ln.strip() for ln in r.stdout.splitlines() if "nvinfer" in ln][:5]
    return env


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg.replace("_", "-"))
    except PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------- measurements


def parity(encode: Callable[[list[str], int], np.ndarray], texts: list[str], ref: np.ndarray) -> dict[str, Any]:
    got = np.asarray(encode(texts, 32), dtype=np.float32)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
    cos = (got * ref).sum(axis=1) / np.maximum(norms, 1e-12)
    worst = int(np.argmin(cos))
    return {"texts": len(texts), "min_cosine": round(float(cos.min()), 7), "mean_cosine": round(float(cos.mean()), 7),
            "max_abs_diff": float(np.abs(got - ref).max()), "worst_text_chars": len(texts[worst])}


def measure(encode: Callable[[list[str], int], np.ndarray], texts: list[str], cfg: argparse.Namespace) -> dict:
    """Throughput over the batch-size sweep, then one-text latency (bench/worker.py's conventions)."""
    sweep = {}
    for bs in cfg.batch_sizes:
        sub = texts[: min(len(texts), max(cfg.min_texts, 100 * bs))]
        encode(sub, bs)  # warm-up over the same shapes: allocators, kernels, cuBLAS heuristics
        runs: list[float] = []
        while len(runs) < cfg.repeats or (sum(runs) < cfg.min_seconds and len(runs) < 50):
            t = time.perf_counter()
            encode(sub, bs)
            runs.append(time.perf_counter() - t)
        sec = float(np.median(runs))
        sweep[str(bs)] = {"texts": len(sub), "runs": len(runs), "seconds": round(sec, 4),
                          "texts_per_s": round(len(sub) / sec, 1)}
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.permutation(len(texts))[: cfg.latency_n]]
    for t in sample[:10]:
        encode([t], 1)
    single = []
    for t in sample:
        s = time.perf_counter()
        encode([t], 1)
        single.append(time.perf_counter() - s)
    ms = np.array(single) * 1000
    return {"throughput": sweep, "latency_single_ms": {
        "n": len(sample), "p50": round(float(np.percentile(ms, 50)), 3), "p99": round(float(np.percentile(ms, 99)), 3)}}


def node_placement(ort: Any, model: Path, providers: list[tuple[str, dict]], ids: np.ndarray, mask: np.ndarray,
                   work: Path) -> dict[str, Any]:
    """Which provider ran each node, from ONNX Runtime's profile of one run (get_providers() only
    lists what was registered, not what runs)."""
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(work / "placement")
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model), so, providers=[p for p, _ in providers],
                                provider_options=[o for _, o in providers])
    sess.run(None, {"input_ids": ids, "attention_mask": mask})
    prof = Path(sess.end_profiling())
    events = json.loads(prof.read_text())
    prof.unlink()
    per: dict[str, Counter] = {}
    for ev in events:
        args = ev.get("args") or {}
        if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time") and "provider" in args:
            per.setdefault(args["provider"], Counter())[args.get("op_name", "?")] += 1
    return {p: {"nodes": sum(c.values()), "ops": dict(c.most_common())} for p, c in per.items()}


def cache_files(folder: Path) -> list[dict[str, Any]]:
    if not folder.exists():
        return []
    return [{"file": str(p.relative_to(folder)), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in sorted(folder.rglob("*")) if p.is_file()]


# ---------------------------------------------------------------- the report


class Report:
    def __init__(self, out: Path, dry_run: bool):
        self.path = out / "gpu_proof.json"
        self.data: dict[str, Any] = {"dry_run": dry_run, "argv": sys.argv[1:], "rows": [], "skipped": [],
                                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        out.mkdir(parents=True, exist_ok=True)

    def skip(self, what: str, why: str) -> None:
        log(f"SKIP {what}: {why}")
        self.data["skipped"].append({"what": what, "why": why})
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


class Run:
    """The proof, section by section; every section writes the report when it ends."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.gpu = not args.dry_run
        self.dev = "cuda" if self.gpu else "cpu"
        self.out = Path(os.environ.get("OUT") or args.out)
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.rep = Report(self.out, args.dry_run)
        self.inputs = Path(args.inputs)
        self.artifact = Path(args.artifact)
        self.texts = read_corpus(self.inputs / "corpus.jsonl")
        self.ref = np.load(self.inputs / "reference.npy")
        if args.dry_run:
            self.texts = self.texts[: args.dry_texts]
            self.ref = self.ref[: min(len(self.ref), args.dry_texts // 2)]
        self.ref_texts = self.texts[: len(self.ref)] if len(self.ref) <= len(self.texts) else []
        self.ort = _ort()
        self.torch_imported_for_libs = False

    def main(self) -> int:
        a, rep = self.args, self.rep
        if not self.ref_texts:
            raise SystemExit("reference.npy has more rows than the corpus: re-run prepare")
        rep.data["mode"] = "GPU" if self.gpu else "DRY RUN on the CPU: exercises the code path, numbers are not claims"
        log(rep.data["mode"])
        rep.data["cuda_libraries"] = preload_cuda(self.ort) if self.gpu else "dry run: not loaded"
        rep.data["environment"] = environment(self.ort, self.gpu)
        log(f"available providers: {rep.data['environment']['available_providers']}")
        rep.data["inputs"] = {"texts": len(self.texts), "reference_texts": len(self.ref_texts),
                              "reference": json.loads((self.inputs / "reference.json").read_text())}
        rep.data["config"] = {k: getattr(a, k) for k in ("batch_sizes", "latency_n", "repeats", "min_seconds",
                                                         "min_texts", "batch_tokens")}
        rep.save()
        manifest = self._manifest()
        for variant in ("opt", "fp32", "fp16"):
            self.guarded(f"embedrt {variant} {self.dev}", self.embedrt_row, manifest, variant, self.dev)
        self.guarded("tensorrt", self.tensorrt, manifest)
        self.guarded("torch", self.torch_rows)
        self.targets()
        rep.data["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        rep.save()
        text = table(rep.data)
        (self.out / "gpu_proof.txt").write_text(text + "\n")
        print("\n" + text, flush=True)
        return 0 if all(g["pass"] for g in rep.data["gates"]) else 1

    def guarded(self, what: str, section: Callable[..., None], *args: Any) -> None:
        """Run one section; a failure is recorded and the next section still runs (device time is scarce)."""
        try:
            section(*args)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            self.rep.skip(what, f"failed: {type(e).__name__}: {e}")

    def _manifest(self) -> Any:
        from embedrt import load_manifest

        return load_manifest(self.artifact)

    # ---- embedrt on ONNX Runtime

    def load_encoder(self, device: str, variant: str, cache_dir: Path | None = None) -> tuple[Any, float]:
        from embedrt import Encoder, ModelLoadError, ProviderError

        def load() -> Any:
            return Encoder.load(self.artifact, device=device, variant=variant, threads=self.args.threads,
                                batch_tokens=self.args.batch_tokens, cache_dir=cache_dir)

        t = time.perf_counter()
        try:
            enc = load()
        except (ProviderError, ModelLoadError) as e:
            if not self.gpu or device != "cuda" or "torch" in sys.modules:
                raise
            log(f"{device} {variant} failed ({e}); retrying after `import torch` loads the CUDA libraries")
            import torch  # noqa: F401

            self.torch_imported_for_libs = True
            self.rep.data["cuda_libraries"]["needed_torch_import"] = str(e)
            t = time.perf_counter()
            enc = load()
        return enc, time.perf_counter() - t

    def embedrt_row(self, manifest: Any, variant: str, device: str, name: str | None = None,
                    cache_dir: Path | None = None) -> None:
        from embedrt import EmbedrtError
        from embedrt.tokenizer import pad_rows

        name = name or f"embedrt {variant} {device}"
        have = {v.name: v for v in manifest.variants}
        if variant not in have:
            return self.rep.skip(name, f"the artifact has no {variant!r} variant (has: {', '.join(have)})")
        if not (self.artifact / have[variant].file).is_file():
            return self.rep.skip(name, f"{have[variant].file} is not here (not carried to this machine)")
        log(f"{name}: loading")
        try:
            enc, load_s = self.load_encoder(device, variant, cache_dir)
        except EmbedrtError as e:
            return self.rep.skip(name, f"{type(e).__name__}: {e}")
        row: dict[str, Any] = {"name": name, "engine": "embedrt", "device": device, "variant": variant,
                               "precision": enc.info.precision, "file": enc.info.file, "load_s": round(load_s, 3),
                               "active_providers": list(enc.info.active_providers)}
        sess = getattr(getattr(enc, "_session", None), "_sess", None)
        if sess is not None:
            row["provider_options"] = sess.get_provider_options()
        log(f"{name}: active providers {row['active_providers']} (load {load_s:.2f} s)")
        rows = enc.tokenize(["A man is playing a guitar.", "Someone plays an instrument in the park today."])
        ids, mask = pad_rows(rows, -(-max(map(len, rows)) // 8) * 8, manifest.pad_token_id)
        providers = self.placement_providers(enc, device, manifest, have[variant], cache_dir)
        try:
            if providers:
                row["placement"] = node_placement(self.ort, self.artifact / have[variant].file, providers, ids,
                                                  mask, self.work)
                log(f"{name}: nodes per provider { {p: v['nodes'] for p, v in row['placement'].items()} }")
        except Exception as e:  # noqa: BLE001 - the measurements below still matter
            row["placement_error"] = f"{type(e).__name__}: {e}"
            log(f"{name}: placement failed: {row['placement_error']}")
        encode = enc.encode
        row["parity_vs_cpu_fp32"] = parity(encode, self.ref_texts, self.ref)
        log(f"{name}: min cosine vs CPU fp32 {row['parity_vs_cpu_fp32']['min_cosine']}")
        row.update(measure(encode, self.texts, self.args))
        self.rep.data["rows"].append(row)
        self.rep.save()
        del enc

    def placement_providers(self, enc: Any, device: str, manifest: Any, variant: Any,
                            cache_dir: Path | None) -> list[tuple[str, dict]] | None:
        """The provider list Encoder.load built (mirrored; for TensorRT only if its profile matches)."""
        from embedrt.batching import BatchPlan
        from embedrt.providers import TensorRTProfile, provider_list

        plan = BatchPlan(max_tokens=self.args.batch_tokens, pad_multiple=8 if device != "cpu" else 1)
        providers = provider_list(
            device, variant_sha256=variant.sha256, inputs=manifest.inputs,
            cache_dir=cache_dir or self.artifact / ".trt_cache",
            profile=TensorRTProfile(max_batch=max(1, self.args.batch_tokens // 8),
                                    max_seq=plan.padded(manifest.max_seq_length), opt_batch=32, opt_seq=64),
            fp16=enc.info.precision == "fp16")
        if device == "tensorrt":
            live = (enc._session._sess.get_provider_options() or {}).get("TensorrtExecutionProvider", {})
            mine = providers[0][1]
            if any(str(live.get(k)) != mine[k] for k in mine if k.startswith("trt_profile")):
                log("placement skipped: mirrored TensorRT profile differs from the session's (would rebuild)")
                return None
        return providers

    # ---- TensorRT: build cost, engine cache reuse across processes

    def tensorrt(self, manifest: Any) -> None:
        a, rep = self.args, self.rep
        if a.skip_trt:
            return rep.skip("tensorrt", "--skip-trt")
        ok, why = load_tensorrt(rep.data["environment"]["available_providers"])
        rep.data["tensorrt"] = {"available": ok, "detail": why}
        device = "tensorrt" if ok else "cpu"
        if not ok:
            rep.skip("embedrt fp16 tensorrt", why)
            if self.gpu:
                return
            log("dry run: the engine-cache steps below run with device cpu (no engine is built)")
        cache = self.work / "trt_cache"
        shutil.rmtree(cache, ignore_errors=True)
        procs = []
        for label in ("first process (empty cache: builds the engine)", "second process (reuses the cache)"):
            log(f"tensorrt: {label}")
            before = cache_files(cache)
            t = time.perf_counter()
            cmd = [sys.executable, __file__, "first-embedding", "--artifact", str(self.artifact), "--device", device,
                   "--variant", "fp32", "--cache-dir", str(cache), "--batch-tokens", str(a.batch_tokens)]
            if not self.gpu:
                cmd.append("--dry-run")
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=a.trt_timeout)
            except subprocess.TimeoutExpired:
                rep.data["tensorrt"]["processes"] = procs
                return rep.skip("embedrt fp16 tensorrt", f"{label} took over {a.trt_timeout} s")
            sys.stdout.write(r.stderr[-4000:])
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
            if r.returncode != 0 or not lines:
                rep.data["tensorrt"]["processes"] = procs
                return rep.skip("embedrt fp16 tensorrt", f"{label} failed (rc {r.returncode}): {r.stderr[-600:]}")
            res = json.loads(lines[-1])
            res.update(label=label, wall_s=round(time.perf_counter() - t, 3), cache_before=before,
                       cache_after=cache_files(cache))
            procs.append(res)
            log(f"tensorrt: {label}: first embedding after {res['first_embedding_s']} s, "
                f"cache files {len(res['cache_after'])}")
        first, second = procs
        engines = [f for f in first["cache_after"] if f["file"].endswith(".engine")]
        rep.data["tensorrt"].update(
            processes=procs, build_s=first["first_embedding_s"], reuse_s=second["first_embedding_s"],
            engine_files=len(engines),
            cache_unchanged_by_second=first["cache_after"] == second["cache_after"],
            reused=bool(engines) and first["cache_after"] == second["cache_after"])
        rep.save()
        if ok:
            self.embedrt_row(manifest, "fp32", "tensorrt", name="embedrt fp16 tensorrt", cache_dir=cache)

    # ---- sentence-transformers on torch, the same device

    def torch_rows(self) -> None:
        a, rep = self.args, self.rep
        if a.skip_torch:
            return rep.skip("torch", "--skip-torch")
        if not (self.inputs / "st_rest.safetensors").is_file():
            return rep.skip("torch fp32/fp16", "prepare was run without --st-model")
        if importlib.util.find_spec("sentence_transformers") is None:
            return rep.skip("torch fp32/fp16", "sentence-transformers is not installed here")
        t = time.perf_counter()
        graph = self.artifact / self._manifest().variant("fp32").file
        st_dir = rebuild_st_model(self.inputs, graph, self.work / "st_model")
        log(f"torch: weights rebuilt from {graph.name}, sha256 per tensor checked ({time.perf_counter() - t:.1f} s)")
        import torch
        from sentence_transformers import SentenceTransformer

        if not self.gpu and a.threads:
            torch.set_num_threads(a.threads)
        rep.data["torch"] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                             "cudnn": torch.backends.cudnn.version() if self.gpu else None,
                             "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
                             "device_name": torch.cuda.get_device_name(0) if self.gpu else platform.processor(),
                             "imported_early_for_cuda_libs": self.torch_imported_for_libs}
        model = SentenceTransformer(str(st_dir), device=self.dev)

        def encode(texts: list[str], bs: int) -> np.ndarray:
            return model.encode(texts, batch_size=bs, convert_to_numpy=True, show_progress_bar=False)

        for precision in ("fp32", "fp16"):
            name = f"torch {precision} {self.dev}"
            try:
                if precision == "fp16":
                    model.half()
                log(f"{name}: measuring")
                row = {"name": name, "engine": "sentence-transformers", "device": self.dev, "precision": precision,
                       "parity_vs_cpu_fp32": parity(encode, self.ref_texts, self.ref)}
                row.update(measure(encode, self.texts, a))
            except Exception as e:  # noqa: BLE001 - e.g. an fp16 kernel missing on the CPU
                rep.skip(name, f"{type(e).__name__}: {e}")
                continue
            rep.data["rows"].append(row)
            rep.save()

    # ---- gates and targets

    def targets(self) -> None:
        self.rep.data["gates"], self.rep.data["targets"] = checks(self.rep.data["rows"], self.dev)


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
        gates.append({"what": f"{r['name']} min cosine vs CPU fp32", "got": got, "limit": limit, "pass": got >= limit})
    for r in rows:  # the GPU provider runs the graph, not just heads the provider list
        place = r.get("placement")
        if r["device"] == "cpu" or not place:
            continue
        provider = r["active_providers"][0]
        nodes = place.get(provider, {}).get("nodes", 0)
        on_cpu = sorted(set(place.get("CPUExecutionProvider", {}).get("ops", {})) & HEAVY_OPS)
        gates.append({"what": f"{r['name']} nodes on {provider}, heavy ops on the CPU",
                      "got": f"{nodes}, {', '.join(on_cpu) or 'none'}", "limit": "> 0, none",
                      "pass": nodes > 0 and not on_cpu})
    ours, theirs = by_name.get(f"embedrt fp16 {dev}"), by_name.get(f"torch fp16 {dev}")
    targets = {}
    if ours and theirs and "32" in ours["throughput"] and "32" in theirs["throughput"]:
        ratio = ours["throughput"]["32"]["texts_per_s"] / theirs["throughput"]["32"]["texts_per_s"]
        targets["fp16_speedup_vs_torch_fp16_bs32"] = {"got": round(ratio, 2), "target": TARGET_SPEEDUP_BS32,
                                                      "met": ratio >= TARGET_SPEEDUP_BS32}
    if ours:
        p50 = ours["latency_single_ms"]["p50"]
        targets["fp16_single_p50_ms"] = {"got": p50, "target": TARGET_P50_MS, "met": p50 < TARGET_P50_MS}
    return gates, targets


def table(data: dict[str, Any]) -> str:
    rows = data["rows"]
    sizes = [str(b) for b in data["config"]["batch_sizes"]]
    env = data["environment"]
    torch_info = data.get("torch", {})
    head = (f"GPU proof: {env.get('gpu') or 'no GPU'} | {env['onnxruntime_package']} {env['onnxruntime']} "
            f"| torch {torch_info.get('torch', '-')} (CUDA {torch_info.get('cuda', '-')})")
    lines = [head]
    if data["dry_run"]:
        lines.append("DRY RUN on the CPU: every step ran with device cpu; numbers are not claims")
    short = {"TensorrtExecutionProvider": "TRT", "CUDAExecutionProvider": "CUDA", "CPUExecutionProvider": "CPU"}
    cols = f"{'candidate':<24} {'providers':<13} {'cpu nodes':>9} {'min cos':>9} " + " ".join(
        f"{'bs' + s:>8}" for s in sizes) + f" {'p50 ms':>7} {'p99 ms':>7}"
    lines += ["texts/s per batch size; p50/p99: one text per call", cols, "-" * len(cols)]
    for r in rows:
        prov = ",".join(short.get(p, p) for p in r.get("active_providers", [])) or r["device"]
        place = r.get("placement")
        cpu_nodes = str(place.get("CPUExecutionProvider", {}).get("nodes", 0)) if place else "-"
        tput = " ".join(f"{r['throughput'].get(s, {}).get('texts_per_s', '-'):>8}" for s in sizes)
        lat = r["latency_single_ms"]
        lines.append(f"{r['name']:<24} {prov:<13} {cpu_nodes:>9} {r['parity_vs_cpu_fp32']['min_cosine']:>9.6f} "
                     f"{tput} {lat['p50']:>7.2f} {lat['p99']:>7.2f}")
    trt = data.get("tensorrt")
    if trt and trt.get("processes"):
        lines.append(f"TensorRT engine cache: first process {trt.get('build_s')} s to first embedding (build), "
                     f"second {trt.get('reuse_s')} s; {trt.get('engine_files')} engine file(s); "
                     f"cache untouched by the second process: {trt.get('cache_unchanged_by_second')}")
    for key, t in data.get("targets", {}).items():
        lines.append(f"target {key}: {t['got']} (target {'>=' if 'speedup' in key else '<'} {t['target']}): "
                     f"{'MET' if t['met'] else 'NOT MET'}")
    for g in data.get("gates", []):
        op = ">=" if isinstance(g["limit"], float) else "vs"
        lines.append(f"check {g['what']}: {g['got']} {op} {g['limit']}: {'PASS' if g['pass'] else 'FAIL'}")
    for s in data["skipped"]:
        lines.append(f"skipped {s['what']}: {s['why'][:300]}")
    return "\n".join(lines)


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
    enc = Encoder.load(args.artifact, device=args.device, variant=args.variant, cache_dir=args.cache_dir,
                       batch_tokens=args.batch_tokens)
    t2 = time.perf_counter()
    enc.encode(["A man is playing a guitar."])
    t3 = time.perf_counter()
    print(json.dumps({"import_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 3),
                      "first_embedding_s": round(t3 - t1, 3), "active_providers": list(enc.info.active_providers)}))


def add_run_options(p: argparse.ArgumentParser, gpu_defaults: bool) -> None:
    p.add_argument("--artifact", type=Path, default=ROOT / "artifacts" / "all-MiniLM-L6-v2")
    p.add_argument("--out", default=str(ROOT / "build" / "gpu-proof"), help="results folder when $OUT is unset")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "embedrt-gpu-work"))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128, 512] if gpu_defaults else [1, 8, 32])
    p.add_argument("--latency-n", type=int, default=500 if gpu_defaults else 8)
    p.add_argument("--repeats", type=int, default=3 if gpu_defaults else 1)
    p.add_argument("--min-seconds", type=float, default=1.0 if gpu_defaults else 0.0)
    p.add_argument("--min-texts", type=int, default=256 if gpu_defaults else 8, help="texts per sweep point, at least")
    p.add_argument("--batch-tokens", type=int, default=16384, help="Encoder.load's padded-token budget")
    p.add_argument("--threads", type=int, default=None if gpu_defaults else 2)
    p.add_argument("--trt-timeout", type=int, default=240, help="seconds per TensorRT process (engine build)")
    p.add_argument("--skip-trt", action="store_true")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--dry-texts", type=int, default=24, help="dry run: texts used from the corpus")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="here: corpus, CPU fp32 references, torch weights plan")
    p.add_argument("--artifact", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--st-model", type=Path)
    p.add_argument("--corpus", type=Path, help="jsonl with a 'text' field instead of the STS-B bench corpus")
    p.add_argument("--texts", type=int, default=3000)
    p.add_argument("--ref-texts", type=int, default=1000)
    p.add_argument("--threads", type=int)
    p = sub.add_parser("run", help="the proof (on the GPU; --dry-run on the CPU)")
    add_run_options(p, gpu_defaults=True)
    p.add_argument("--inputs", type=Path, required=True)
    p.add_argument("--dry-run", action="store_true", help="device cpu instead of cuda/tensorrt, small sizes")
    p = sub.add_parser("dry-run", help="prepare small inputs, then run --dry-run, on the CPU")
    add_run_options(p, gpu_defaults=False)
    p.add_argument("--st-model", type=Path)
    p.add_argument("--corpus", type=Path)
    p.add_argument("--inputs", type=Path, help="use prepared inputs (e.g. .gpu/payload/inputs) instead")
    p = sub.add_parser("first-embedding", help="internal: one fresh process for the TensorRT cache check")
    for flag in ("--artifact", "--device", "--variant", "--cache-dir"):
        p.add_argument(flag, required=True)
    p.add_argument("--batch-tokens", type=int, default=16384)
    p.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()

    if args.cmd == "prepare":
        prepare(args.artifact, args.out, st_model=args.st_model, corpus=args.corpus, texts=args.texts,
                ref_texts=args.ref_texts, threads=args.threads)
    elif args.cmd == "first-embedding":
        first_embedding(args)
    else:
        if args.cmd == "dry-run":
            args.dry_run = True
            if args.inputs is None:
                args.inputs = Path(args.work) / "inputs"
                shutil.rmtree(args.inputs, ignore_errors=True)
                prepare(args.artifact, args.inputs, st_model=args.st_model, corpus=args.corpus,
                        texts=args.dry_texts, ref_texts=args.dry_texts // 2, threads=args.threads)
        sys.exit(Run(args).main())


if __name__ == "__main__":
    main()
