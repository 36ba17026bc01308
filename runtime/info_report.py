"""`embedrt info` for a person: the model, a table of its variants with their gates and key
figures, what was refused and why, and what this machine runs (commands.info; `--json` prints
the manifest and Encoder.describe() instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .manifest import Manifest, Variant
from .variants import auto_skipped


def info_lines(artifact: str, manifest: Manifest, loaded: dict[str, Any]) -> list[str]:
    """`embedrt info` for a person: the model, a table of variants, what runs here."""
    src = manifest.source
    sha = src.get("weights_sha256")
    own = src.get("max_seq_length")  # the model's own (export --max-seq-length may cut it)
    cut = f" (the model's {own})" if own not in (None, manifest.max_seq_length) else ""
    lines = [
        f"artifact   {artifact}",
        f"source     {src.get('model', '?')}" + (f" (weights sha256 {sha[:16]}...)" if sha else ""),
        f"model      {src.get('architecture') or '?'}: dim {manifest.dim}, max_seq_length "
        f"{manifest.max_seq_length}{cut}, pooling {manifest.pooling}, normalize "
        f"{str(manifest.normalize).lower()}, similarity {manifest.similarity_fn}, "
        f"opset {manifest.opset}",
    ]
    if manifest.prompts:
        default = manifest.default_prompt_name
        lines += [f"prompts    default: {default!r}" if default else "prompts    no default"]
        lines += [f"  {name}: {text!r}" for name, text in manifest.prompts.items()]
    lines.append("")
    rows = []
    for v in manifest.variants:
        paths = [Path(artifact) / f for f in v.files]
        total = sum(p.stat().st_size for p in paths if p.is_file())
        size = f"{total / 1e6:.1f}" if all(p.is_file() for p in paths) else "missing"
        gate = str(v.quality.get("gate", "-"))
        providers = ", ".join(_short_provider(p) for p in v.providers)
        rows.append([v.name, v.file, size, v.precision, gate, _figures(v), providers])
    rows += [[name, "-", "-", "-", "refused", "-", "-"] for name in manifest.refused]
    header = ["variant", "file", "size MB", "precision", "gate", "figures", "providers"]
    lines += _table(header, rows, right={2})
    lines += [
        "figures: min cosine to sentence-transformers (ST) or to fp32 on the parity sentences;",
        "         Spearman on STS-B dev or the --eval-pairs (change from fp32); int8: median",
        "         cosine to fp32 and nearest-neighbour top-1 agreement on the evaluation texts",
    ]
    skipped = auto_skipped(manifest)
    if skipped:
        lines += ["", "not used by precision=auto (its gate failed)"]
        lines += [f"  {name}: {why}" for name, why in skipped.items()]
    if manifest.refused:
        lines += ["", "refused"]
        for name, why in manifest.refused.items():
            reason, _, figures = why.partition("; figures: ")
            lines.append(f"  {name}: {reason}")
            if figures:
                lines.append(f"  {' ' * len(name)}  figures: {figures}")
    notes = [(v.name, v.notes) for v in manifest.variants if v.notes]
    if notes:
        lines += ["", "notes"] + [f"  {name}: {note}" for name, note in notes]
    tools = ", ".join(f"{k} {v}" for k, v in manifest.tools.items())
    lines += [
        "",
        f"providers  available here: {', '.join(loaded['available_providers'])}",
        f"chosen     device {loaded['device']}, precision {loaded['precision']}, "
        f"variant {loaded['variant']} ({loaded['file']}), "
        f"active: {', '.join(loaded['active_providers'])}{_loaded_length(manifest, loaded)}",
        f"tools      {tools or '-'}",
    ]
    return lines


def _loaded_length(manifest: Manifest, loaded: dict[str, Any]) -> str:
    """ ", max_seq_length N" where the load asked for a shorter one than the artifact's."""
    n = loaded.get("max_seq_length")
    return f", max_seq_length {n}" if n not in (None, manifest.max_seq_length) else ""


def _figures(variant: Variant) -> str:
    """The key parity and quality figures of a variant, short: `ST 0.9999999, STS-B 0.8672`."""
    quality, figures = variant.quality, []
    st = quality.get("parity_vs_sentence_transformers")
    fp32 = quality.get("parity_vs_fp32")
    if st:
        figures.append(f"ST {st['min_cosine']:.7f}")
    elif fp32 and variant.name != "fp32":
        figures.append(f"fp32 {fp32['min_cosine']:.7f}")
    for key, label in (("stsb_dev_spearman", "STS-B"), ("eval_pairs_spearman", "pairs")):
        if key in quality:
            rho = f"{label} {quality[key]:.4f}"
            if f"{key}_minus_fp32" in quality:
                rho += f" ({quality[f'{key}_minus_fp32']:+.4f})"
            figures.append(rho)
    cosine, neighbours = quality.get("cosine_to_fp32"), quality.get("neighbours_vs_fp32")
    if cosine and neighbours:
        figures.append(f"cos {cosine['median']:.4f}, top-1 {neighbours['top1_agreement']:.1%}")
    return ", ".join(figures) or "-"


def _short_provider(name: str) -> str:
    """CUDAExecutionProvider -> CUDA, TensorrtExecutionProvider -> TensorRT."""
    return name.removesuffix("ExecutionProvider").replace("Tensorrt", "TensorRT")


def _table(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; `right` columns right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), *(line(r) for r in rows)]
