"""A variant's entry in the artifact's manifest as the export builds it: added when its file is
written, then kept with its gate ("passed" or "failed" and why), or refused (its files deleted,
the reason and figures in the manifest's `refused`). Each change is written to embedrt.json at
once: the next step measures the variant through Encoder.load, which finds it there. Also the
stage's progress-line pieces (verdict, error_line, counts_line).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from embedrt.manifest import Manifest, Variant, write_manifest

from .tables import graph_entry


def verdict(why: str) -> str:
    """A gate's outcome for the export's progress line."""
    return f"refused: {why}" if why else "passed"


def error_line(e: Exception) -> str:
    """An exception's type and first line, for a refusal's reason."""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


def counts_line(counts: dict[str, int]) -> str:
    """Fused operator counts, "Attention 6, BiasGelu 6"."""
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items())) or "nothing"


def keep(
    folder: Path, manifest: Manifest, name: str, quality: dict, why: str, notes: str = ""
) -> Manifest:
    """Keep the variant either way: gate 'passed', or 'failed' with the reason (loaded only
    when asked for by name or precision; precision='auto' skips it)."""
    outcome = {"gate": "failed", "gate_failed": why} if why else {"gate": "passed"}
    variant = replace(manifest.variant(name), notes=notes)
    return replace_variant(folder, manifest, variant, quality | outcome)


def gate(
    folder: Path, manifest: Manifest, name: str, quality: dict, why: str, notes: str = ""
) -> Manifest:
    """Keep the variant with gate 'passed', or delete its file and record why it was refused."""
    variant = manifest.variant(name)
    if not why:
        return replace_variant(
            folder, manifest, replace(variant, notes=notes), quality | {"gate": "passed"}
        )
    for file in variant.files:
        (folder / file).unlink()
    manifest = replace(manifest, variants=tuple(v for v in manifest.variants if v.name != name))
    return refuse(folder, manifest, name, why, quality)


def refuse(folder: Path, manifest: Manifest, name: str, why: str, figures: dict) -> Manifest:
    """Record in the manifest's `refused` why a variant was not written, with its figures."""
    reason = f"{why}; figures: {figures}" if figures else why
    manifest = replace(manifest, refused=dict(manifest.refused) | {name: reason})
    write_manifest(folder, manifest)
    return manifest


def add_variant(
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
        precision=precision,
        providers=providers,
        fused_ops=dict(fused),
        **graph_entry(folder, file),
    )
    manifest = replace(manifest, variants=manifest.variants + (variant,))
    write_manifest(folder, manifest)
    return manifest


def replace_variant(folder: Path, manifest: Manifest, variant: Variant, quality: dict) -> Manifest:
    new = replace(variant, quality=dict(variant.quality) | quality)
    manifest = replace(
        manifest, variants=tuple(new if v.name == variant.name else v for v in manifest.variants)
    )
    write_manifest(folder, manifest)
    return manifest
