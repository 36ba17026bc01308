"""Which of an artifact's variants a device and precision load (DESIGN.md: auto = fp16 on a
GPU, int8 on the CPU where its quality gate passed, else fp32).

Pure logic over the manifest, no session: tested without a model.
"""

from __future__ import annotations

from .errors import ConfigError
from .manifest import Manifest, Variant
from .providers import provider_name

PRECISIONS = ("auto", "fp32", "fp16", "int8")


def manifest_variant(manifest: Manifest, name: str) -> Variant:
    try:
        return manifest.variant(name)
    except KeyError:
        have = ", ".join(v.name for v in manifest.variants)
        raise ConfigError(f"this artifact has no variant {name!r}; it has: {have}") from None


def choose_variant(manifest: Manifest, device: str, precision: str) -> Variant:
    """The variant for a device and precision (see DESIGN.md: auto = fp16 on GPU, fp32/int8 on CPU).

    Variants are listed best first in the manifest; the first that matches wins. TensorRT takes
    the portable fp32 graph and builds its own fp16 engine.
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
        if p == "int8" and precision == "auto":  # only an int8 that passed its quality gate
            matches = [v for v in matches if v.quality.get("gate") == "passed"]
        fitting = [v for v in matches if not v.providers or provider in v.providers]
        if fitting or matches:
            return (fitting or matches)[0]
    have = ", ".join(sorted({v.precision for v in manifest.variants}))
    raise ConfigError(
        f"this artifact has no {precision} variant for device {device!r}; it has: {have}. "
        "Re-export with the variant, or pass precision='auto'."
    )
