"""export_model: a sentence-transformers folder in, a verified artifact directory out.

The artifact is built in a temporary sibling directory and moved into place only after the
parity check passed, so a failed export never leaves a half-written or unverified artifact.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from dataclasses import replace
from pathlib import Path

import onnx

from embedrt.errors import ConfigError
from embedrt.manifest import (
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    Variant,
    sha256_file,
    write_manifest,
)

from .graph import INPUTS, OUTPUT, export_onnx
from .parity import PARITY_SENTENCES, check_fp32, reference_embeddings
from .source import SourceModel, read_source
from .tokenizer_file import write_tokenizer
from .variants import VARIANTS, build_variants

_TOOLS = (
    "embedrt",
    "torch",
    "transformers",
    "sentence-transformers",
    "onnx",
    "onnxruntime",
    "tokenizers",
)


def export_model(
    src: str | Path,
    out: str | Path,
    *,
    opset: int = 17,
    check_parity: bool = True,
    variants: tuple[str, ...] = VARIANTS,
) -> Manifest:
    """Export `src` (a folder, or a known model name) to the artifact directory `out`.

    Writes the portable fp32 model.onnx and the requested optimized variants (opt, int8, fp16),
    each measured and gated (variants.py). Raises ParityError (nothing written) when the fp32
    graph disagrees with sentence-transformers.
    """
    source = read_source(src)
    out = Path(out)
    _check_target(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        export_onnx(source, tmp / "model.onnx", opset)
        contrib = contrib_ops(tmp / "model.onnx")
        if contrib:
            raise ConfigError(f"model.onnx must stay portable but has contrib ops: {contrib}")
        pad_id = write_tokenizer(source, tmp / "tokenizer.json")
        manifest = _manifest(source, tmp, opset, pad_id)
        write_manifest(tmp, manifest)
        reference = None
        if check_parity:
            reference = reference_embeddings(source.path, PARITY_SENTENCES)
            parity = check_fp32(tmp, reference, PARITY_SENTENCES)
            fp32 = manifest.variants[0]
            quality = {
                "parity_vs_sentence_transformers": parity.as_dict(),
                "verified_on": ["CPUExecutionProvider"],
            }
            manifest = replace(manifest, variants=(replace(fp32, quality=quality),))
            write_manifest(tmp, manifest)
        if variants:
            manifest = build_variants(source, tmp, manifest, PARITY_SENTENCES, reference, variants)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def contrib_ops(model_path: Path) -> list[str]:
    """Operators outside the standard ONNX domain (TensorRT cannot run com.microsoft ops)."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    return sorted(
        {f"{n.domain}.{n.op_type}" for n in graph.node if n.domain not in ("", "ai.onnx")}
    )


def _manifest(source: SourceModel, folder: Path, opset: int, pad_id: int) -> Manifest:
    model = folder / "model.onnx"
    return Manifest(
        source={
            "model": source.name,
            "path": str(source.path),
            "layout": source.layout,
            "modules": list(source.modules),
            "weights_file": source.weights_file,
            "weights_sha256": source.weights_sha256,
        },
        dim=source.dim,
        max_seq_length=source.max_seq_length,
        pooling=source.pooling,
        normalize=source.normalize,
        do_lower_case=source.do_lower_case,
        tokenizer=FileEntry("tokenizer.json", sha256_file(folder / "tokenizer.json")),
        variants=(
            Variant(
                name="fp32",
                file=model.name,
                sha256=sha256_file(model),
                precision="fp32",
                providers=(
                    "TensorrtExecutionProvider",
                    "CUDAExecutionProvider",
                    "CPUExecutionProvider",
                ),
            ),
        ),
        inputs=INPUTS,
        output=OUTPUT,
        opset=opset,
        pad_token_id=pad_id,
        tools=_tool_versions(),
    )


def _tool_versions() -> dict[str, str]:
    versions = {}
    for name in _TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def _check_target(out: Path) -> None:
    """Refuse to overwrite a non-empty directory that is not an embedrt artifact."""
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_NAME).is_file())
    ):
        raise ConfigError(f"{out} exists and is not an embedrt artifact; refusing to overwrite it")


def _move_into_place(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
