"""The GPU proof's ONNX Runtime, CUDA and TensorRT environment (bench/gpu.py): loading the CUDA
libraries of the image's nvidia pip packages and the TensorRT 10 libraries before ONNX Runtime needs
them, and recording versions, providers and the GPU; also log(), the proof's log line.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import importlib
import importlib.util
import io
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

import numpy as np

CUDA_LIBS = (
    "libcublasLt.so.{M}",
    "libcublas.so.{M}",
    "libcudart.so.{M}",
    "libcurand.so.10",
    "libcudnn.so.9",
)
TRT_LIBS = ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10")


def log(msg: str) -> None:
    print(f"[gpu.py] {msg}", flush=True)


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
    return False, (
        "TensorrtExecutionProvider is listed (it is compiled in) but the TensorRT 10 libraries "
        f"do not load: {errors[-1]}. Install tensorrt-cu13-libs 10.x (the 'tensorrt' extra)."
    )


def environment(ort: Any, gpu: bool) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_file": ort.__file__,
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
        r = subprocess.run(
            ["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        env["gpu"] = r.stdout.strip() or r.stderr.strip()
    elif gpu:
        env["gpu"] = "nvidia-smi not found"
    if shutil.which("ldconfig"):
        r = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=30)
        env["ldconfig_nvinfer"] = [ln.strip() for ln in r.stdout.splitlines() if "nvinfer" in ln][
            :5
        ]
    return env


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg.replace("_", "-"))
    except PackageNotFoundError:
        return "?"
