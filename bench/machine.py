"""What machine a benchmark ran on, for its results: the ratios between engines depend on it.

int8 kernels gain most from wide integer dot products (AVX-512 VNNI), and CPUs of one name
differ there: a Zen 4 core runs 512-bit instructions in two 256-bit halves, a Zen 5 core in one
pass, so int8's lead over fp32 and torch moves with the generation. Every throughput result
therefore names its CPU's vendor, family and model and the vector extensions int8 uses.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# AMD's CPUID families by core generation (family 25 holds Zen 3 and Zen 4, told apart by model).
_AMD = {26: "Zen 5"}
_AMD_25 = {range(0x10, 0x20): "Zen 4", range(0x60, 0x80): "Zen 4", range(0xA0, 0xB0): "Zen 4"}
_EXTENSIONS = ("avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu() -> str:
    """e.g. 'AMD EPYC (family 26 model 2, Zen 5; avx512_vnni avx512_bf16), 2 CPUs'."""
    fields = _cpuinfo()
    name = fields.get("model name") or platform.processor() or platform.machine()
    detail = []
    if "cpu family" in fields and "model" in fields:
        family, model = int(fields["cpu family"]), int(fields["model"])
        generation = _generation(fields.get("vendor_id", ""), family, model)
        detail.append(f"family {family} model {model}" + (f", {generation}" if generation else ""))
    flags = set(fields.get("flags", "").split())
    have = [e for e in _EXTENSIONS if e in flags]
    if have:
        detail.append(" ".join(have))
    inside = f" ({'; '.join(detail)})" if detail else ""
    return f"{name}{inside}, {os.cpu_count()} CPUs"


def describe() -> str:
    """The CPU, Python and ONNX Runtime versions, in one line."""
    versions = f"Python {platform.python_version()}"
    try:
        import onnxruntime

        versions += f", onnxruntime {onnxruntime.__version__}"
    except ImportError:
        pass
    return f"{cpu()}, {versions}"


def _generation(vendor: str, family: int, model: int) -> str:
    if vendor != "AuthenticAMD":
        return ""
    if family == 25:
        return next((g for r, g in _AMD_25.items() if model in r), "Zen 3")
    return _AMD.get(family, "")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


if __name__ == "__main__":
    print(describe())
