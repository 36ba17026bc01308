"""Which of an artifact's variants a device and precision load (DESIGN.md: auto = fp16 on a
GPU, int8 on the CPU where its quality gate passed, else fp32).

A variant whose gate failed at export (an int8 that is not a faithful stand-in for fp32) stays
in the artifact for those who ask for it by precision or name; precision="auto" never picks it
(auto_skipped says why, for `embedrt info`).

Pure logic over the manifest, no session: tested without a model.
"""

from __future__ import annotations

import re

from .errors import ConfigError
from .manifest import Manifest, Variant
from .providers import provider_name

PRECISIONS = ("auto", "fp32", "fp16", "int8")
# ONNX's Attention (opset 23), which an int8 graph runs where the export could
# (export/attention.py, its fused_ops' "attention"), has a CPU kernel from onnxruntime 1.23.
ATTENTION_RUNTIME = (1, 23)


def manifest_variant(manifest: Manifest, name: str) -> Variant:
    try:
        return manifest.variant(name)
    except KeyError:
        have = ", ".join(v.name for v in manifest.variants)
        raise ConfigError(f"this artifact has no variant {name!r}; it has: {have}") from None


def auto_usable(variant: Variant) -> bool:
    """Whether precision='auto' may pick the variant: not one whose gate failed, an int8 only
    with a gate that passed (an int8 without a recorded gate is unchecked), and none this
    onnxruntime cannot run (runtime_lacks)."""
    gate = variant.quality.get("gate")
    if runtime_lacks(variant):
        return False
    if variant.precision == "int8":
        return gate == "passed"
    return gate != "failed"


def runtime_lacks(variant: Variant) -> str:
    """Why the installed onnxruntime cannot run the variant's graph, or "" (it can, or none is
    installed: loading says so)."""
    if not variant.fused_ops.get("attention"):
        return ""
    version = onnxruntime_version()
    if version is None or version >= ATTENTION_RUNTIME:
        return ""
    need = ".".join(map(str, ATTENTION_RUNTIME))
    return (
        f"its graph runs ONNX's Attention operator, which onnxruntime "
        f"{'.'.join(map(str, version))} lacks: pip install 'onnxruntime>={need}'"
    )


def onnxruntime_version() -> tuple[int, int] | None:
    """(major, minor) of the installed onnxruntime, or None without one."""
    try:
        import onnxruntime
    except ImportError:
        return None
    found = re.match(r"(\d+)\.(\d+)", onnxruntime.__version__)
    return (int(found[1]), int(found[2])) if found else None


def auto_skipped(manifest: Manifest) -> dict[str, str]:
    """{variant name: why precision='auto' does not use it} for the variants it passes over."""
    skipped = {}
    for v in manifest.variants:
        if not auto_usable(v):
            why = (
                runtime_lacks(v)
                or v.quality.get("gate_failed")
                or f"its quality gate is {v.quality.get('gate')!r}"
            )
            skipped[v.name] = f"{why}; load it with precision={v.precision!r} to use it anyway"
    return skipped


def choose_variant(manifest: Manifest, device: str, precision: str) -> Variant:
    """The variant for a device and precision (see DESIGN.md: auto = fp16 on GPU, fp32/int8 on CPU).

    Variants are listed best first in the manifest; the first that matches wins. TensorRT takes
    the portable fp32 graph and builds its own fp16 engine. precision='auto' passes over a
    variant whose gate failed (auto_usable); an explicit precision takes it.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if device == "tensorrt":
        if precision == "int8":
            raise ConfigError("precision 'int8' is for the CPU; TensorRT runs fp16 or fp32")
        wanted = ["fp32"]
    elif precision != "auto":
        wanted = [precision]
    elif device == "cpu":
        wanted = ["int8", "fp32"]
    else:
        wanted = ["fp16", "fp32"]
    provider = provider_name(device)
    for p in wanted:
        matches = [v for v in manifest.variants if v.precision == p]
        if precision == "auto":
            matches = [v for v in matches if auto_usable(v)]
        fitting = [v for v in matches if not v.providers or provider in v.providers]
        if fitting or matches:
            return (fitting or matches)[0]
    have = ", ".join(sorted({v.precision for v in manifest.variants}))
    raise ConfigError(
        f"this artifact has no {precision} variant for device {device!r}; it has: {have}. "
        "Re-export with the variant, or pass precision='auto'."
    )
