"""export_model: a sentence-transformers folder in, a verified artifact directory out.

The artifact is built in a temporary sibling directory and moved into place only after the
parity check passed, so a failed export never leaves a half-written or unverified artifact.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx

from embedrt.config import check_int
from embedrt.errors import ConfigError
from embedrt.manifest import (
    MANIFEST_NAME,
    MAX_DIM,
    FileEntry,
    Manifest,
    Variant,
    sha256_file,
    write_manifest,
)

from .graph import INPUTS, OUTPUT, export_onnx
from .output import check_replaceable, replacing, tool_versions
from .parity import PARITY_SENTENCES, check_fp32, reference_embeddings
from .progress import Progress, Stages
from .source import SourceModel, read_source
from .tables import graph_entry
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
    progress: Progress | None = None,
    calibration: str | Path | None = None,
    eval_pairs: str | Path | None = None,
    max_seq_length: int | None = None,
) -> Manifest:
    """Export `src` (a folder, or a known model name) to the artifact directory `out`.

    Writes the portable fp32 model.onnx and the requested optimized variants (opt, int8, fp16),
    each measured and gated (variants.py). Raises ParityError (nothing written) when the fp32
    graph disagrees with sentence-transformers.

    calibration: a UTF-8 file of texts, one per line, to calibrate int8 on; eval_pairs: a TSV
    file (sentence1, sentence2, score) to gate int8 on; by default the English STS-B data
    shipped with embedrt (datasets.py).

    max_seq_length: truncate at this many tokens instead of the model's own max_seq_length (at
    most that), as `model.max_seq_length = N` does in sentence-transformers: the artifact's
    tokenizer, manifest and parity check all take it. For a long-context model (8192 tokens
    and more) it bounds what one text costs: ONNX Runtime's attention holds heads x length^2
    floats per score tensor.

    progress is told of each stage as it starts and ends (progress.py's StageLines prints them).
    The export leaves logging, warnings and progress bars as the caller set them, so the
    libraries it drives print what they print (transformers' weight-loading bars, torch.onnx's
    tracer warnings, ONNX Runtime's quantizer advice): a library does not change a program's
    global settings unasked. To silence them, wrap the call in `quiet_libraries()`, which
    restores every setting afterwards; `embedrt export` does that unless --verbose.

        manifest = export_model("models/ft", "artifacts/ft", progress=StageLines(sys.stderr))
    """
    source = read_source(src)
    own_length = source.max_seq_length
    why = " (at most the model's own max_seq_length)"
    check_int("max_seq_length", max_seq_length, 2, own_length, none=True, why=why)
    if max_seq_length is not None:
        source = replace(source, max_seq_length=max_seq_length)
    out = Path(out)
    check_replaceable(
        out, MANIFEST_NAME, f"{out} exists and is not an embedrt artifact; refusing to overwrite it"
    )
    stages = Stages(progress, 1 + check_parity + (1 + len(set(variants)) if variants else 0))
    with replacing(out) as tmp:
        stages.start("graph: torch -> ONNX")
        export_onnx(source, tmp / "model.onnx", opset)
        contrib = contrib_ops(tmp / "model.onnx")
        if contrib:
            raise ConfigError(f"model.onnx must stay portable but has contrib ops: {contrib}")
        pad_id = write_tokenizer(source, tmp / "tokenizer.json")
        manifest = _manifest(source, tmp, opset, pad_id, own_length)
        write_manifest(tmp, manifest)
        size = (tmp / "model.onnx").stat().st_size / 1e6
        stages.end(f"model.onnx {size:.1f} MB, opset {opset}")
        reference = None
        if check_parity:
            stages.start("parity vs sentence-transformers")
            reference = reference_embeddings(source.path, PARITY_SENTENCES, source.max_seq_length)
            parity = check_fp32(tmp, reference, PARITY_SENTENCES)
            fp32 = manifest.variants[0]
            quality = {
                "parity_vs_sentence_transformers": parity.as_dict(),
                "verified_on": ["CPUExecutionProvider"],
            }
            manifest = replace(manifest, variants=(replace(fp32, quality=quality),))
            write_manifest(tmp, manifest)
            stages.end(f"{parity.summary()}: passed")
        if variants:
            manifest = build_variants(
                source,
                tmp,
                manifest,
                PARITY_SENTENCES,
                reference,
                variants,
                stages,
                calibration=None if calibration is None else Path(calibration),
                eval_pairs=None if eval_pairs is None else Path(eval_pairs),
            )
    return manifest


def contrib_ops(model_path: Path) -> list[str]:
    """Operators outside the standard ONNX domain (TensorRT cannot run com.microsoft ops)."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    return sorted(
        {f"{n.domain}.{n.op_type}" for n in graph.node if n.domain not in ("", "ai.onnx")}
    )


def activation_width(model_path: Path) -> int | None:
    """Floats per token of the graph's widest matrix product: the largest output width of a
    MatMul or Gemm by a weight (the feed-forward's inner layer, or a wider Dense); None if it
    has none."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {t.name: list(t.dims) for t in graph.initializer if len(t.dims) == 2}
    widths = []
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in weights:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            widths.append(weights[node.input[1]][0 if trans_b else 1])
    widest = max(widths, default=None)
    return None if widest is None else min(widest, MAX_DIM)  # what the manifest may hold


def _manifest(
    source: SourceModel, folder: Path, opset: int, pad_id: int, own_length: int
) -> Manifest:
    return Manifest(
        source={
            "max_seq_length": own_length,  # the model's own; the manifest's may be shorter
            "model": source.name,
            "path": str(source.path),
            "layout": source.layout,
            "modules": list(source.modules),
            "architecture": source.architecture,
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
                precision="fp32",
                providers=(
                    "TensorrtExecutionProvider",
                    "CUDAExecutionProvider",
                    "CPUExecutionProvider",
                ),
                **graph_entry(folder, "model.onnx"),
            ),
        ),
        inputs=INPUTS,
        output=OUTPUT,
        opset=opset,
        pad_token_id=pad_id,
        tools=tool_versions(_TOOLS),
        prompts=dict(source.prompts),
        default_prompt_name=source.default_prompt_name,
        similarity_fn=source.similarity_fn,
        activation_width=activation_width(folder / "model.onnx"),
    )
