"""What each `embedrt` command does, given its parsed options (cli.py parses them).

Each handler imports its surface lazily, so `embedrt info` never pays for starlette, pyarrow or
torch, and a missing extra is named only by the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .encoder import Encoder

SAMPLE_SENTENCES = (
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "A woman is slicing onions in the kitchen.",
    "Vegetables are being cut.",
    "The stock market fell sharply on Monday.",
)


def export(args: argparse.Namespace) -> int:
    from contextlib import AbstractContextManager, nullcontext

    from .errors import ConfigError

    # Needs the 'export' extra; the import names it if missing.
    from .export import VARIANTS, StageLines, export_model, quiet_libraries
    from .export.datasets import read_pairs, read_texts

    variants = () if args.variants == "none" else tuple(v for v in args.variants.split(",") if v)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(
            f"--variants {args.variants!r}: no variant {', '.join(unknown)}; "
            f"give a comma list of {', '.join(VARIANTS)}, or none"
        )
    # A bad --calibration or --eval-pairs file is named now, not after minutes of export.
    if args.calibration:
        read_texts(args.calibration)
    if args.eval_pairs:
        read_pairs(args.eval_pairs)
    # One line per stage on stderr; the libraries' bars and warnings only with --verbose.
    lines = StageLines(sys.stderr, own_line=args.verbose)
    libraries: AbstractContextManager[None] = nullcontext() if args.verbose else quiet_libraries()
    try:
        with libraries:
            manifest = export_model(
                args.src,
                args.out,
                opset=args.opset,
                check_parity=not args.no_parity,
                variants=variants,
                progress=lines,
                calibration=args.calibration,
                eval_pairs=args.eval_pairs,
                max_seq_length=args.max_seq_length,
            )
    finally:
        lines.close()  # a stage an error cut short ends its line before the error's message
    names = sorted((v.name for v in manifest.variants), key=lambda n: n != "fp32")
    summary = f"wrote {args.out}: {', '.join(names)}"
    if manifest.refused:
        summary += f" (refused: {', '.join(manifest.refused)}; embedrt info {args.out} says why)"
    if args.no_parity:
        summary += "; not checked against sentence-transformers (--no-parity)"
    print(summary)
    return 0


def info(args: argparse.Namespace) -> int:
    from .manifest import load_manifest

    manifest = load_manifest(args.artifact)
    enc = load_encoder(args, args.artifact)
    info = {
        "manifest": json.loads(manifest.to_json()),
        "loaded": enc.describe(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from .info_report import info_lines

    print("\n".join(info_lines(args.artifact, manifest, info["loaded"])))
    return 0


def similarity(args: argparse.Namespace) -> int:

    texts = args.texts or list(SAMPLE_SENTENCES)
    enc = load_encoder(args, args.artifact)
    vecs = enc.encode(texts)
    sim = enc.similarity(vecs, vecs)
    i = enc.info
    print(
        f"{len(texts)} texts -> {vecs.shape[1]}-d embeddings on {i.device} "
        f"({i.precision}, {i.file}, active {i.active_providers[0]})"
    )
    width = max(len(t) for t in texts)
    width = min(width, 48)
    print(" " * (width + 2) + "".join(f"{k:>7}" for k in range(len(texts))))
    for k, (t, row) in enumerate(zip(texts, sim, strict=True)):
        label = (t if len(t) <= width else t[: width - 1] + "…").ljust(width)
        print(f"{label} {k}" + "".join(f"{x:7.3f}" for x in row))
    return 0


def embed(args: argparse.Namespace) -> int:
    from .jobs.command import embed_command

    return embed_command(args)


def serve(args: argparse.Namespace) -> int:
    from .serve.command import serve_command

    return serve_command(args)


def train(args: argparse.Namespace) -> int:
    import shlex

    # Needs the 'train' extra; the import names it if missing.
    from .export.train.recipe import Recipe
    from .export.train.snli import default_cache_dir
    from .export.train.trainer import train_model, training_data

    # Options left out (None) take the recipe's and the data's own defaults.
    recipe = Recipe(
        **given(
            args,
            base="base",
            batch_size="batch_size",
            epochs="epochs",
            learning_rate="lr",
            seed="seed",
            max_steps="max_steps",
        )
    )
    pairs, evals = training_data(
        args.data,
        args.cache_dir or default_cache_dir(),
        seed=recipe.seed,
        **given(args, pairs="pairs", snli_labels="snli_labels", heldout="heldout"),
    )
    typed = {k: v for k, v in vars(args).items() if k not in ("command", "handler")}
    command = "embedrt train " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {shlex.quote(str(v))}")
        for k, v in typed.items()
        if v not in (None, False)
    )
    train_model(
        pairs,
        args.out,
        recipe,
        labels=args.labels,
        eval_sets=evals,
        device=args.device,
        force=args.force,
        command=command,
    )
    return 0


def given(args: argparse.Namespace, **names: str) -> dict[str, object]:
    """{parameter: value} of the options the user gave (not None), by parameter name."""
    return {
        param: getattr(args, opt) for param, opt in names.items() if getattr(args, opt) is not None
    }


def bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .benchmark import report, run_grid
    from .errors import ConfigError

    try:
        sizes = [int(x) for x in args.batch_sizes.split(",") if x]
        lens = [int(x) for x in args.seq_lens.split(",") if x]
    except ValueError:
        raise ConfigError("--batch-sizes and --seq-lens take comma lists of integers") from None
    if not sizes or not lens or min(sizes + lens) < 1 or args.runs < 1:
        raise ConfigError("--batch-sizes, --seq-lens and --runs need positive integers")
    enc = load_encoder(args, args.model, variant=args.variant)
    past = [n for n in lens if n > enc.max_seq_length]
    if past == lens:
        raise ConfigError(
            f"every --seq-lens is past max_seq_length {enc.max_seq_length}: ask for shorter ones"
        )
    if past:  # the tokenizer cuts there: such cells would repeat the longest
        print(f"skipped --seq-lens past max_seq_length {enc.max_seq_length}: {past}")
    cells = run_grid(enc, sizes, lens, runs=args.runs)
    print(report(enc, cells, Path(args.json) if args.json else None))
    return 0


def load_encoder(args: argparse.Namespace, path: str, **options: Any) -> Encoder:
    """The Encoder the runtime options ask for (--device, --precision, --threads, --streams,
    --spinning, --max-seq-length)."""
    from .encoder import Encoder

    return Encoder.load(
        path,
        args.device,
        args.precision,
        threads=args.threads,
        streams=args.streams,
        spinning=args.spinning,
        max_seq_length=args.max_seq_length,
        **options,
    )
