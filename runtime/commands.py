"""What each `embedrt` command does, given its parsed options (cli.py parses them).

Each handler imports its surface lazily, so `embedrt info` never pays for starlette, pyarrow or
torch, and a missing extra is named only by the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import sys

SAMPLE_SENTENCES = (
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "A woman is slicing onions in the kitchen.",
    "Vegetables are being cut.",
    "The stock market fell sharply on Monday.",
)


def export(args: argparse.Namespace) -> int:
    from .export import export_model  # needs the 'export' extra; the import names it if missing

    variants = () if args.variants == "none" else tuple(v for v in args.variants.split(",") if v)
    manifest = export_model(
        args.src, args.out, opset=args.opset, check_parity=not args.no_parity, variants=variants
    )
    for v in manifest.variants:
        print(f"wrote {args.out}/{v.file} ({v.name}): {json.dumps(v.quality)}")
    for name, why in manifest.refused.items():
        print(f"refused {name}: {why}", file=sys.stderr)
    return 0


def info(args: argparse.Namespace) -> int:
    from .encoder import Encoder
    from .manifest import load_manifest

    manifest = load_manifest(args.artifact)
    enc = Encoder.load(
        args.artifact, args.device, args.precision, threads=args.threads, streams=args.streams
    )
    info = {
        "manifest": json.loads(manifest.to_json()),
        "loaded": enc.describe(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    src = manifest.source
    print(f"artifact   {args.artifact}")
    print(
        f"source     {src.get('model', '?')} (weights sha256 {str(src.get('weights_sha256', '?'))[:16]}...)"
    )
    print(
        f"model      dim {manifest.dim}, max_seq_length {manifest.max_seq_length}, "
        f"pooling {manifest.pooling}, normalize {manifest.normalize}, opset {manifest.opset}"
    )
    print("variants")
    for v in manifest.variants:
        print(
            f"  {v.name:6} {v.file:18} {v.precision:5} sha256 {v.sha256[:12]}  {json.dumps(v.quality)}"
        )
        if v.notes:
            print(f"         note: {v.notes}")
    d = info["loaded"]
    print(f"providers  available: {', '.join(d['available_providers'])}")
    print(
        f"chosen     device {d['device']}, precision {d['precision']}, variant {d['variant']}, "
        f"active: {', '.join(d['active_providers'])}"
    )
    print(f"tools      {json.dumps(manifest.tools)}")
    return 0


def similarity(args: argparse.Namespace) -> int:
    from .encoder import Encoder

    texts = args.texts or list(SAMPLE_SENTENCES)
    enc = Encoder.load(
        args.artifact, args.device, args.precision, threads=args.threads, streams=args.streams
    )
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
    from pathlib import Path

    from .encoder import Encoder
    from .jobs import JobConfig, run_job

    if args.ray or args.ray_address or args.actors:
        return embed_ray(args)
    config = JobConfig(
        text_field=args.text_field,
        id_field=args.id_field,
        format=args.format,
        batch_size=args.batch_size,
        shard_rows=args.shard_rows,
        on_error=args.on_error,
        skipped_path=Path(args.skipped) if args.skipped else None,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=args.progress,
        log_interval_s=args.log_every,
    )
    enc = Encoder.load(
        args.model,
        args.device,
        args.precision,
        threads=args.threads,
        streams=args.streams,
        spinning=args.spinning == "on",
        batch_tokens=args.batch_tokens,
    )
    try:
        summary = run_job(args.input, args.output, enc, config)
    except KeyboardInterrupt:
        print(
            f"embedrt embed: interrupted; committed shards are kept in {args.output}.parts, "
            "continue with --resume",
            file=sys.stderr,
        )
        return 130
    print(summary.describe(), file=sys.stderr)
    return 0


def embed_ray(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .ray import RayJobConfig, run_ray_job  # run_ray_job names the missing 'ray' extra

    if not args.ray:
        raise ConfigError("--ray-address and --actors run the job on Ray: add --ray")
    if args.streams is not None:
        raise ConfigError(
            "--streams is for the local job: each Ray actor takes one stream per CPU "
            "it is given (--actor-cpus)"
        )
    if args.resume or args.format == "npy":
        raise ConfigError(
            "--ray writes a directory of parquet files and is not resumable: "
            "drop --resume / --format npy, or run without --ray"
        )
    config = RayJobConfig(
        text_field=args.text_field,
        id_field=args.id_field,
        actors=args.actors,
        actor_cpus=args.actor_cpus,
        actor_gpus=args.actor_gpus,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        spinning=args.spinning == "on",
        batch_rows=args.ray_batch_rows,
        batch_size=args.batch_size,
        batch_tokens=args.batch_tokens,
        on_error=args.on_error,
        skipped_path=args.skipped,
        overwrite=args.overwrite,
        progress=args.progress != "none",
    )
    summary = run_ray_job(args.input, args.output, args.model, config, address=args.ray_address)
    print(summary.describe(), file=sys.stderr)
    return 0


def serve(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .serve import BatchingConfig, Limits, ServerConfig
    from .serve import serve as run_server  # names a missing 'serve' extra

    key = None
    if args.api_key_file:
        try:
            key = open(args.api_key_file, encoding="utf-8").read().strip()
        except OSError as e:
            raise ConfigError(f"--api-key-file {args.api_key_file!r}: {e.strerror}") from None
        if not key or any(c.isspace() for c in key):
            raise ConfigError(f"--api-key-file {args.api_key_file!r} must hold one key, no spaces")
    config = ServerConfig(
        host=args.host,
        port=args.port,
        api_key=key,
        model_name=args.model_name,
        access_log=args.access_log,
        limits=Limits(max_inputs=args.max_inputs, max_body_bytes=args.max_body_bytes),
        batching=BatchingConfig(
            max_batch_tokens=args.max_batch_tokens,
            max_batch_requests=args.max_batch_requests,
            max_wait_ms=args.max_wait_ms,
            max_queue=args.max_queue,
            batch_size=args.batch_size,
            run_cost=args.run_cost,
            batching=not args.no_batching,
        ),
    )
    return run_server(
        args.model,
        config,
        args.device,
        args.precision,
        threads=args.threads,
        spinning=args.spinning == "on",
        streams=args.streams,
    )


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
    from .encoder import Encoder
    from .errors import ConfigError

    try:
        sizes = [int(x) for x in args.batch_sizes.split(",") if x]
        lens = [int(x) for x in args.seq_lens.split(",") if x]
    except ValueError:
        raise ConfigError("--batch-sizes and --seq-lens take comma lists of integers") from None
    if not sizes or not lens or min(sizes + lens) < 1 or args.runs < 1:
        raise ConfigError("--batch-sizes, --seq-lens and --runs need positive integers")
    enc = Encoder.load(
        args.model,
        args.device,
        args.precision,
        threads=args.threads,
        streams=args.streams,
        variant=args.variant,
    )
    cells = run_grid(enc, sizes, lens, runs=args.runs)
    print(report(enc, cells, Path(args.json) if args.json else None))
    return 0
