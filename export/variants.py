"""The optimized variants of an artifact (opt, int8, fp16), each built, measured and gated.

They are speed options: none of them fails an export (the fp32 graph with parity is the one hard
gate), except where a failure is a bug (ONNX Runtime's optimizer fusing less of a BERT-family
model than it always does; such a graph then disagreeing with sentence-transformers).
- opt: written only where attention fused (optimize.py says why elsewhere nothing useful does);
  otherwise the manifest's `refused` says what fused and why that is not enough.
- int8: always kept once built. If its gate fails (quality.int8_gate: cosine to fp32, nearest
  neighbours, Spearman, batch invariance) it is recorded with gate "failed" and the reason,
  loaded only when asked for (precision="int8"), never by precision="auto".
- fp16: from the fused graph where the optimizer ran, else the plain one; a failed gate removes
  it (refused), as its failure means an overflow, not a trade-off.
Variants are listed best first: the runtime takes the first that fits a device and precision
(opt before the portable fp32 on the CPU and CUDA; fp32 on TensorRT).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from embedrt import Encoder
from embedrt.manifest import Manifest, write_manifest
from embedrt.providers import CPU, CUDA

from .datasets import DataSource, calibration_texts, eval_data
from .fp16 import convert_fp16
from .optimize import Geometry, attention_fused, optimize, why_not_more
from .parity import FP32_MAX_ABS, FP32_MIN_COSINE, ParityError, compare
from .progress import Stages
from .quality import FP16_MIN_COSINE, Evaluation, encode_texts, int8_gate, measure
from .quantize import quantize_int8
from .source import SourceModel
from .variant_manifest import (
    add_variant,
    counts_line,
    error_line,
    gate,
    keep,
    refuse,
    replace_variant,
    verdict,
)

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
    *,
    calibration: Path | None = None,
    eval_pairs: Path | None = None,
) -> Manifest:
    """Add the requested variants to the artifact in `folder`; returns the final manifest.

    calibration: a file of texts, one per line, to calibrate int8 on (default: 512 shipped
    STS-B train sentences). eval_pairs: a TSV of sentence1, sentence2, score to gate int8 on
    (default: the shipped STS-B dev and test pairs). Both read and checked before any work.
    stages: told of the fp32 figures and of each variant (its gate and key figure), in that order.
    """
    unknown = set(which) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    calibrate = calibration_texts(calibration) if "int8" in which else None
    data = eval_data(eval_pairs) if "int8" in which else None
    stages = stages or Stages(None, 0)
    stages.start("fp32: reference figures")
    fp32_vecs = Encoder.load(folder, device="cpu", variant="fp32").encode(
        list(sentences), batch_size=64
    )
    evaluation = None
    if data is not None:
        texts_fp32 = encode_texts(folder, "fp32", data.texts)
        evaluation = Evaluation(data, texts_fp32, manifest.similarity_fn)
    fp32_figs = measure(folder, "fp32", sentences, fp32_vecs, evaluation)
    fp32_spearman = fp32_figs.spearman
    manifest = replace_variant(
        folder, manifest, manifest.variant("fp32"), fp32_figs.as_dict(None) | {"gate": "passed"}
    )
    stages.end(fp32_figs.line())
    # read only for the variants that use it: a config without the keys still gets its int8
    geometry = (
        Geometry.from_config(source.transformer_path / "config.json")
        if {"opt", "fp16"} & set(which)
        else None
    )

    if "opt" in which:
        assert geometry is not None
        stages.start("opt: ONNX Runtime fusions")
        manifest, line = _build_opt(folder, manifest, geometry, sentences, fp32_vecs, st_reference)
        stages.end(line)

    if calibrate is not None and evaluation is not None:  # both read when int8 is asked for
        stages.start("int8: static quantization")
        manifest, line = _build_int8(
            folder, manifest, sentences, fp32_vecs, calibrate, evaluation, fp32_spearman
        )
        stages.end(line)

    if "fp16" in which:
        assert geometry is not None
        stages.start("fp16: conversion")
        manifest, line = _build_fp16(folder, manifest, geometry, sentences, fp32_vecs)
        stages.end(line)

    ordered = sorted(manifest.variants, key=lambda v: _ORDER.index(v.name))
    manifest = replace(manifest, variants=tuple(ordered))
    write_manifest(folder, manifest)
    return manifest


def _build_opt(
    folder: Path,
    manifest: Manifest,
    geometry: Geometry,
    sentences: tuple[str, ...],
    fp32_vecs: np.ndarray,
    st_reference: np.ndarray | None,
) -> tuple[Manifest, str]:
    """model_opt.onnx where attention fused; (manifest, the stage's line)."""
    dst = folder / "model_opt.onnx"
    # Without the offline SkipLayerNormalization fusion: ONNX Runtime fuses those pairs at
    # load on CUDA (SkipLayerNormFusion runs for the CPU and CUDA providers alike), and
    # embedrt leaves it out on the CPU, where its kernel is slow (runtime/session.py). So
    # one file serves both, at fp32's throughput with a lower single-text latency on the
    # CPU (bench/results/throughput_sentences.md).
    try:
        counts = optimize(folder / "model.onnx", dst, geometry, skip_layer_norm=False)
    except Exception as e:
        if geometry.fully_fused:
            raise  # a BERT-family graph the optimizer cannot fuse is a bug, not a model
        dst.unlink(missing_ok=True)
        why = f"ONNX Runtime's optimizer failed on this {geometry.family} graph: " + error_line(e)
        return refuse(folder, manifest, "opt", why, {}), f"refused: {why}"
    short = why_not_more(counts, geometry, skip_layer_norm=False)
    if not attention_fused(counts):
        dst.unlink()
        why = (
            f"nothing useful fused: {short}; what did fuse ({counts_line(counts)}) ONNX Runtime "
            "fuses at load anyway, so model.onnx runs as fast"
        )
        return refuse(folder, manifest, "opt", why, {"fused_ops": counts}), f"refused: {why}"
    manifest = add_variant(folder, manifest, "opt", dst.name, "fp32", (CPU, CUDA), counts)
    try:
        figs = measure(folder, "opt", sentences, fp32_vecs)
    except Exception as e:  # e.g. a fused operator ONNX Runtime's CPU provider lacks
        if geometry.fully_fused:
            raise
        why = f"ONNX Runtime cannot run the fused graph: {error_line(e)}"
        return gate(folder, manifest, "opt", {}, why), f"refused: {why}"
    quality = figs.as_dict(None)
    checked = f"min cosine to fp32 {figs.vs_fp32['min_cosine']:.7f}"
    why = ""
    if st_reference is not None:
        vecs = Encoder.load(folder, device="cpu", variant="opt").encode(
            list(sentences), batch_size=8
        )
        parity = compare(st_reference, vecs)
        if parity.max_abs_diff > FP32_MAX_ABS or parity.min_cosine < FP32_MIN_COSINE:
            why = f"model_opt.onnx differs from sentence-transformers: {parity}"
            if geometry.fully_fused:
                raise ParityError(why)
        quality["parity_vs_sentence_transformers"] = parity.as_dict()
        checked = f"min cosine to sentence-transformers {parity.min_cosine:.7f}"
    manifest = gate(folder, manifest, "opt", quality, why, notes=short)
    return manifest, f"fused {counts_line(counts)}; {checked}: {verdict(why)}"


def _build_int8(
    folder: Path,
    manifest: Manifest,
    sentences: tuple[str, ...],
    fp32_vecs: np.ndarray,
    calibrate: tuple[tuple[str, ...], DataSource],
    evaluation: Evaluation,
    fp32_spearman: float | None,
) -> tuple[Manifest, str]:
    """model_int8.onnx, kept whether or not its gate passes; (manifest, the stage's line)."""
    texts, calibrated_on = calibrate
    try:
        counts = quantize_int8(
            folder / "model.onnx",
            folder / "model_int8.onnx",
            folder / manifest.tokenizer.file,
            manifest.max_seq_length,
            texts=texts,
            pad_id=manifest.pad_token_id,
        )
    except Exception as e:  # a speed option: recorded, never the end of the export
        (folder / "model_int8.onnx").unlink(missing_ok=True)
        why = f"quantization failed: {error_line(e)}"
        return refuse(folder, manifest, "int8", why, {}), f"refused: {why}"
    manifest = add_variant(folder, manifest, "int8", "model_int8.onnx", "int8", (CPU,), counts)
    try:
        figs = measure(folder, "int8", sentences, fp32_vecs, evaluation)
    except Exception as e:  # a quantized graph ONNX Runtime cannot run is no int8 at all
        why = f"ONNX Runtime cannot run the quantized graph: {error_line(e)}"
        return gate(folder, manifest, "int8", {}, why), f"refused: {why}"
    quality = figs.as_dict(fp32_spearman) | {
        "calibration": calibrated_on.as_dict(),
        "eval_data": [s.as_dict() for s in evaluation.data.sources],
    }
    why = int8_gate(figs, fp32_spearman)
    language = (
        "gated on English text only (embedrt's STS-B); for other languages or domains "
        "re-export with --eval-pairs FILE (and --calibration FILE)"
        if evaluation.data.english_only
        else ""
    )
    manifest = keep(folder, manifest, "int8", quality, why, notes=language)
    outcome = f"failed, kept for precision='int8' only: {why}" if why else "passed"
    return manifest, f"{figs.line(fp32_spearman)}: {outcome}"


def _build_fp16(
    folder: Path,
    manifest: Manifest,
    geometry: Geometry,
    sentences: tuple[str, ...],
    fp32_vecs: np.ndarray,
) -> tuple[Manifest, str]:
    """model_fp16.onnx from the fully fused graph (SkipLayerNormalization included) where the
    optimizer runs, else from the plain graph; (manifest, the stage's line)."""
    dst, fused = folder / "model_fp16.onnx", folder / ".model_fused.onnx"
    try:
        optimize(folder / "model.onnx", fused, geometry)
        sources = [fused, folder / "model.onnx"]
    except Exception:
        if geometry.fully_fused:
            raise
        sources = [folder / "model.onnx"]
    errors = []
    try:
        for src in sources:
            try:
                kept = convert_fp16(src, dst)
                break
            except Exception as e:  # the fused graph's contrib ops, an unknown norm: try plain
                errors.append(f"from {'the fused' if src == fused else 'the plain'} graph: {e}")
        else:
            why = f"conversion failed ({'; '.join(errors)})"
            return refuse(folder, manifest, "fp16", why, {}), f"refused: {why}"
    finally:
        fused.unlink(missing_ok=True)
    fused_ops = {"fp32_pooling_nodes": len(kept)}
    manifest = add_variant(folder, manifest, "fp16", dst.name, "fp16", (CUDA,), fused_ops)
    try:
        figs = measure(folder, "fp16", sentences, fp32_vecs)
    except Exception as e:  # e.g. an If node whose branches the converter typed apart
        why = f"ONNX Runtime cannot run the converted graph: {error_line(e)}"
        return gate(folder, manifest, "fp16", {}, why), f"refused: {why}"
    quality = figs.as_dict(None) | {"verified_on": ["CPUExecutionProvider (reference path)"]}
    cos = float(figs.vs_fp32["min_cosine"])
    why = "" if cos >= FP16_MIN_COSINE else f"min cosine to fp32 {cos:.6f} < {FP16_MIN_COSINE}"
    notes = (
        "fp16 for CUDA; checked on the CPU execution provider only (ONNX Runtime runs the ops "
        "it lacks fp16 kernels for in fp32 there): unverified on a GPU until a GPU run"
    )
    if errors:
        notes += f"; built from the plain graph ({'; '.join(errors)})"
    manifest = gate(folder, manifest, "fp16", quality, why, notes=notes)
    return manifest, f"min cosine to fp32 {cos:.7f} (CPU reference path): {verdict(why)}"
