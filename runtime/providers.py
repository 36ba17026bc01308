"""Execution providers: which device to use, and the options ONNX Runtime documents for each.

Pure logic (no onnxruntime import): given the providers ONNX Runtime offers, resolve a device
name to an ordered provider list with options. The session module then checks which providers
ONNX Runtime really activated, because it silently falls back to the CPU when a GPU provider
fails to load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, ProviderError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
_PROVIDER_OF = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
_AUTO_ORDER = ("tensorrt", "cuda", "cpu")


@dataclass(frozen=True)
class TensorRTProfile:
    """The shape range a TensorRT engine is built for (rows and tokens per batch).

    The batcher never exceeds max_batch rows or max_seq tokens, so one profile covers every
    batch it forms; opt is the shape TensorRT tunes kernels for.
    """

    max_batch: int
    max_seq: int
    opt_batch: int
    opt_seq: int

    @classmethod
    def within(cls, max_batch: int, max_seq: int, opt_batch: int, opt_seq: int) -> TensorRTProfile:
        """The profile with opt cut to max where it is larger (a short max_seq_length, a small
        token budget): TensorRT builds no engine unless min <= opt <= max."""
        return cls(max_batch, max_seq, min(opt_batch, max_batch), min(opt_seq, max_seq))

    def shapes(self, inputs: tuple[str, ...]) -> dict[str, str]:
        def spec(b: int, s: int) -> str:
            return ",".join(f"{name}:{b}x{s}" for name in inputs)

        return {
            "trt_profile_min_shapes": spec(1, 1),
            "trt_profile_opt_shapes": spec(self.opt_batch, self.opt_seq),
            "trt_profile_max_shapes": spec(self.max_batch, self.max_seq),
        }


def provider_name(device: str) -> str:
    """The ONNX Runtime provider that runs a device ("cpu" -> "CPUExecutionProvider")."""
    return _PROVIDER_OF[device]


def auto_devices(available: list[str]) -> list[str]:
    """The devices ONNX Runtime offers, best first (tensorrt > cuda > cpu): what "auto" tries."""
    devices = [d for d in _AUTO_ORDER if _PROVIDER_OF[d] in available]
    if not devices:
        raise ProviderError(f"ONNX Runtime offers no usable provider; available: {available}")
    return devices


def resolve_device(requested: str, available: list[str]) -> str:
    """The device to use: `requested`, or for "auto" the best ONNX Runtime offers.

    Raises ProviderError listing what is available when an explicit device is missing.
    """
    if requested not in DEVICES:
        raise ConfigError(f"device {requested!r} is not one of {', '.join(DEVICES)}")
    if requested == "auto":
        return auto_devices(available)[0]
    if _PROVIDER_OF[requested] not in available:
        hint = (
            " Install the GPU build: pip install 'embedrt[gpu]' (and 'embedrt[tensorrt]' for "
            "TensorRT), with the cpu extra uninstalled."
            if requested != "cpu"
            else ""
        )
        raise ProviderError(
            f"device {requested!r} needs {_PROVIDER_OF[requested]}, which this ONNX Runtime "
            f"does not offer; available providers: {', '.join(available) or 'none'}.{hint}"
        )
    return requested


def provider_list(
    device: str,
    *,
    variant_sha256: str,
    inputs: tuple[str, ...],
    cache_dir: Path,
    profile: TensorRTProfile,
    fp16: bool,
    device_id: int = 0,
) -> list[tuple[str, dict[str, Any]]]:
    """Providers with options for `device`, best first; CPU last as ONNX Runtime expects.

    TensorRT's engine and timing caches live under cache_dir/<variant sha256 prefix>-<precision>-
    <profile>, so an engine built for another graph, precision or shape range is never reused.
    """
    cpu: tuple[str, dict[str, Any]] = (CPU, {})
    if device == "cpu":
        return [cpu]
    cuda: tuple[str, dict[str, Any]] = (
        CUDA,
        {"device_id": device_id},
    )
    if device == "cuda":
        return [cuda, cpu]
    if device == "tensorrt":
        key = f"{variant_sha256[:16]}-{'fp16' if fp16 else 'fp32'}-{profile.max_batch}x{profile.max_seq}"
        cache = Path(cache_dir) / key
        trt = {
            "device_id": device_id,
            "trt_fp16_enable": fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_max_workspace_size": 4 << 30,
            **profile.shapes(inputs),
        }
        return [(TENSORRT, trt), cuda, cpu]
    raise ConfigError(f"device {device!r} is not one of {', '.join(DEVICES[1:])}")


def check_active(device: str, active: list[str]) -> None:
    """Raise ProviderError when ONNX Runtime did not activate the requested provider."""
    wanted = _PROVIDER_OF[device]
    if not active or active[0] != wanted:
        raise ProviderError(
            f"ONNX Runtime did not activate {wanted} (active: {', '.join(active) or 'none'}); "
            "it falls back to the CPU when the provider's libraries (CUDA, cuDNN, TensorRT) "
            "fail to load. Check `embedrt info` and the ONNX Runtime log above."
        )
