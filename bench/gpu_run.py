"""The GPU proof's measured run (bench/gpu.py run): Run, section by section (embedrt on ONNX
Runtime, the TensorRT engine cache across processes, sentence-transformers on torch), the Report
it saves as sections finish, and the measurements (parity, throughput and latency, node placement,
cache files).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from corpus import read_corpus
from gpu_env import _ort, environment, load_tensorrt, log, preload_cuda
from gpu_inputs import rebuild_st_model
from gpu_report import checks, table

GPU_PY = str(
    Path(__file__).with_name("gpu.py")
)  # the entry point the TensorRT cache check runs afresh


# ---------------------------------------------------------------- measurements


def parity(
    encode: Callable[[list[str], int], np.ndarray], texts: list[str], ref: np.ndarray
) -> dict[str, Any]:
    got = np.asarray(encode(texts, 32), dtype=np.float32)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
    cos = (got * ref).sum(axis=1) / np.maximum(norms, 1e-12)
    worst = int(np.argmin(cos))
    return {
        "texts": len(texts),
        "min_cosine": round(float(cos.min()), 7),
        "mean_cosine": round(float(cos.mean()), 7),
        "max_abs_diff": float(np.abs(got - ref).max()),
        "worst_text_chars": len(texts[worst]),
    }


def measure(
    encode: Callable[[list[str], int], np.ndarray], texts: list[str], cfg: argparse.Namespace
) -> dict:
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
        sweep[str(bs)] = {
            "texts": len(sub),
            "runs": len(runs),
            "seconds": round(sec, 4),
            "texts_per_s": round(len(sub) / sec, 1),
        }
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
    return {
        "throughput": sweep,
        "latency_single_ms": {
            "n": len(sample),
            "p50": round(float(np.percentile(ms, 50)), 3),
            "p99": round(float(np.percentile(ms, 99)), 3),
        },
    }


def node_placement(
    ort: Any,
    model: Path,
    providers: list[tuple[str, dict]],
    ids: np.ndarray,
    mask: np.ndarray,
    work: Path,
) -> dict[str, Any]:
    """Which provider ran each node, from ONNX Runtime's profile of one run (get_providers() only
    lists what was registered, not what runs)."""
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(work / "placement")
    so.log_severity_level = 3
    sess = ort.InferenceSession(
        str(model),
        so,
        providers=[p for p, _ in providers],
        provider_options=[o for _, o in providers],
    )
    sess.run(None, {"input_ids": ids, "attention_mask": mask})
    prof = Path(sess.end_profiling())
    events = json.loads(prof.read_text())
    prof.unlink()
    per: dict[str, Counter] = {}
    for ev in events:
        args = ev.get("args") or {}
        if (
            ev.get("cat") == "Node"
            and ev.get("name", "").endswith("_kernel_time")
            and "provider" in args
        ):
            per.setdefault(args["provider"], Counter())[args.get("op_name", "?")] += 1
    return {p: {"nodes": sum(c.values()), "ops": dict(c.most_common())} for p, c in per.items()}


def cache_files(folder: Path) -> list[dict[str, Any]]:
    if not folder.exists():
        return []
    return [
        {
            "file": str(p.relative_to(folder)),
            "bytes": p.stat().st_size,
            "mtime_ns": p.stat().st_mtime_ns,
        }
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


# ---------------------------------------------------------------- the report


class Report:
    def __init__(self, out: Path, dry_run: bool):
        self.path = out / "gpu_proof.json"
        self.data: dict[str, Any] = {
            "dry_run": dry_run,
            "argv": sys.argv[1:],
            "rows": [],
            "skipped": [],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
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
        rep.data["mode"] = (
            "GPU"
            if self.gpu
            else "DRY RUN on the CPU: exercises the code path, numbers are not claims"
        )
        log(rep.data["mode"])
        rep.data["cuda_libraries"] = preload_cuda(self.ort) if self.gpu else "dry run: not loaded"
        rep.data["environment"] = environment(self.ort, self.gpu)
        log(f"available providers: {rep.data['environment']['available_providers']}")
        rep.data["inputs"] = {
            "texts": len(self.texts),
            "reference_texts": len(self.ref_texts),
            "reference": json.loads((self.inputs / "reference.json").read_text()),
        }
        rep.data["config"] = {
            k: getattr(a, k)
            for k in (
                "batch_sizes",
                "latency_n",
                "repeats",
                "min_seconds",
                "min_texts",
                "batch_tokens",
            )
        }
        rep.save()
        manifest = self._manifest()
        for variant in ("opt", "fp32", "fp16"):
            self.guarded(
                f"embedrt {variant} {self.dev}", self.embedrt_row, manifest, variant, self.dev
            )
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

    def load_encoder(
        self, device: str, variant: str, cache_dir: Path | None = None
    ) -> tuple[Any, float]:
        from embedrt import Encoder, ModelLoadError, ProviderError

        def load() -> Any:
            return Encoder.load(
                self.artifact,
                device=device,
                variant=variant,
                threads=self.args.threads,
                batch_tokens=self.args.batch_tokens,
                cache_dir=cache_dir,
            )

        t = time.perf_counter()
        try:
            enc = load()
        except (ProviderError, ModelLoadError) as e:
            if not self.gpu or device != "cuda" or "torch" in sys.modules:
                raise
            log(
                f"{device} {variant} failed ({e}); retrying after `import torch` loads the CUDA libraries"
            )
            import torch  # noqa: F401

            self.torch_imported_for_libs = True
            self.rep.data["cuda_libraries"]["needed_torch_import"] = str(e)
            t = time.perf_counter()
            enc = load()
        return enc, time.perf_counter() - t

    def embedrt_row(
        self,
        manifest: Any,
        variant: str,
        device: str,
        name: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        from embedrt import EmbedrtError
        from embedrt.tokenizer import pad_rows

        name = name or f"embedrt {variant} {device}"
        have = {v.name: v for v in manifest.variants}
        if variant not in have:
            return self.rep.skip(
                name, f"the artifact has no {variant!r} variant (has: {', '.join(have)})"
            )
        missing = [f for f in have[variant].files if not (self.artifact / f).is_file()]
        if missing:
            return self.rep.skip(
                name, f"{', '.join(missing)} not here (not carried to this machine)"
            )
        log(f"{name}: loading")
        try:
            enc, load_s = self.load_encoder(device, variant, cache_dir)
        except EmbedrtError as e:
            return self.rep.skip(name, f"{type(e).__name__}: {e}")
        row: dict[str, Any] = {
            "name": name,
            "engine": "embedrt",
            "device": device,
            "variant": variant,
            "precision": enc.info.precision,
            "file": enc.info.file,
            "load_s": round(load_s, 3),
            "active_providers": list(enc.info.active_providers),
        }
        sess = getattr(getattr(enc, "_session", None), "_sess", None)
        if sess is not None:
            row["provider_options"] = sess.get_provider_options()
        log(f"{name}: active providers {row['active_providers']} (load {load_s:.2f} s)")
        rows = enc.tokenize(
            ["A man is playing a guitar.", "Someone plays an instrument in the park today."]
        )
        ids, mask = pad_rows(rows, -(-max(map(len, rows)) // 8) * 8, manifest.pad_token_id)
        providers = self.placement_providers(enc, device, manifest, have[variant], cache_dir)
        try:
            if providers:
                row["placement"] = node_placement(
                    self.ort, self.artifact / have[variant].file, providers, ids, mask, self.work
                )
                log(
                    f"{name}: nodes per provider { {p: v['nodes'] for p, v in row['placement'].items()} }"
                )
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

    def placement_providers(
        self, enc: Any, device: str, manifest: Any, variant: Any, cache_dir: Path | None
    ) -> list[tuple[str, dict]] | None:
        """The provider list Encoder.load built (mirrored; for TensorRT only if its profile matches)."""
        from embedrt.batching import BatchPlan
        from embedrt.providers import TensorRTProfile, provider_list

        plan = BatchPlan(
            max_tokens=self.args.batch_tokens, pad_multiple=8 if device != "cpu" else 1
        )
        providers = provider_list(
            device,
            variant_sha256=variant.sha256,
            inputs=manifest.inputs,
            cache_dir=cache_dir or self.artifact / ".trt_cache",
            profile=TensorRTProfile(
                max_batch=max(1, self.args.batch_tokens // 8),
                max_seq=plan.padded(manifest.max_seq_length),
                opt_batch=32,
                opt_seq=64,
            ),
            fp16=enc.info.precision == "fp16",
        )
        if device == "tensorrt":
            live = (enc._session._sess.get_provider_options() or {}).get(
                "TensorrtExecutionProvider", {}
            )
            mine = providers[0][1]
            if any(str(live.get(k)) != mine[k] for k in mine if k.startswith("trt_profile")):
                log(
                    "placement skipped: mirrored TensorRT profile differs from the session's (would rebuild)"
                )
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
        for label in (
            "first process (empty cache: builds the engine)",
            "second process (reuses the cache)",
        ):
            log(f"tensorrt: {label}")
            before = cache_files(cache)
            t = time.perf_counter()
            cmd = [
                sys.executable,
                GPU_PY,
                "first-embedding",
                "--artifact",
                str(self.artifact),
                "--device",
                device,
                "--variant",
                "fp32",
                "--cache-dir",
                str(cache),
                "--batch-tokens",
                str(a.batch_tokens),
            ]
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
                return rep.skip(
                    "embedrt fp16 tensorrt",
                    f"{label} failed (rc {r.returncode}): {r.stderr[-600:]}",
                )
            res = json.loads(lines[-1])
            res.update(
                label=label,
                wall_s=round(time.perf_counter() - t, 3),
                cache_before=before,
                cache_after=cache_files(cache),
            )
            procs.append(res)
            log(
                f"tensorrt: {label}: first embedding after {res['first_embedding_s']} s, "
                f"cache files {len(res['cache_after'])}"
            )
        first, second = procs
        engines = [f for f in first["cache_after"] if f["file"].endswith(".engine")]
        rep.data["tensorrt"].update(
            processes=procs,
            build_s=first["first_embedding_s"],
            reuse_s=second["first_embedding_s"],
            engine_files=len(engines),
            cache_unchanged_by_second=first["cache_after"] == second["cache_after"],
            reused=bool(engines) and first["cache_after"] == second["cache_after"],
        )
        rep.save()
        if ok:
            self.embedrt_row(
                manifest, "fp32", "tensorrt", name="embedrt fp16 tensorrt", cache_dir=cache
            )

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
        log(
            f"torch: weights rebuilt from {graph.name}, sha256 per tensor checked ({time.perf_counter() - t:.1f} s)"
        )
        import torch
        from sentence_transformers import SentenceTransformer

        if not self.gpu and a.threads:
            torch.set_num_threads(a.threads)
        rep.data["torch"] = {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if self.gpu else None,
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "device_name": torch.cuda.get_device_name(0) if self.gpu else platform.processor(),
            "imported_early_for_cuda_libs": self.torch_imported_for_libs,
        }
        model = SentenceTransformer(str(st_dir), device=self.dev)

        def encode(texts: list[str], bs: int) -> np.ndarray:
            return model.encode(
                texts, batch_size=bs, convert_to_numpy=True, show_progress_bar=False
            )

        for precision in ("fp32", "fp16"):
            name = f"torch {precision} {self.dev}"
            try:
                if precision == "fp16":
                    model.half()
                log(f"{name}: measuring")
                row = {
                    "name": name,
                    "engine": "sentence-transformers",
                    "device": self.dev,
                    "precision": precision,
                    "parity_vs_cpu_fp32": parity(encode, self.ref_texts, self.ref),
                }
                row.update(measure(encode, self.texts, a))
            except Exception as e:  # noqa: BLE001 - e.g. an fp16 kernel missing on the CPU
                rep.skip(name, f"{type(e).__name__}: {e}")
                continue
            rep.data["rows"].append(row)
            rep.save()

    # ---- gates and targets

    def targets(self) -> None:
        self.rep.data["gates"], self.rep.data["targets"] = checks(self.rep.data["rows"], self.dev)
