"""`embedrt embed`: the CLI's options turned into a job's config, and the job run.

cli.py parses the options; this module is what the command does (commands.py hands over).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..commands import load_encoder
from ..errors import EXIT_IO, ConfigError
from .config import JobConfig
from .job import run_job


def embed_command(args: argparse.Namespace) -> int:
    """`embedrt embed`: the local job, or with --ray the Ray job."""
    if args.ray or args.ray_address or args.actors:
        return _embed_ray(args)
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
        prompt_name=args.prompt_name,
    )
    enc = load_encoder(args, args.model, batch_tokens=args.batch_tokens)
    try:
        summary = run_job(args.input, args.output, enc, config)
    except KeyboardInterrupt:
        print(
            f"embedrt embed: interrupted; committed shards are kept in {args.output}.parts, "
            "continue with --resume",
            file=sys.stderr,
        )
        return 130
    except OSError as e:  # disk full, a file too large or not writable: one line, and the way on
        parts = Path(str(args.output) + ".parts")
        kept = f"; committed shards are kept in {parts}" if parts.is_dir() else ""
        print(
            f"embedrt embed: error: {e.strerror or e}"
            f"{f' ({e.filename})' if e.filename else ''}{kept}: free the space (or fix the "
            "path), then run the same command with --resume",
            file=sys.stderr,
        )
        return EXIT_IO
    print(summary.describe(), file=sys.stderr)
    return 0


def _embed_ray(args: argparse.Namespace) -> int:
    from ..ray import RayJobConfig, run_ray_job  # run_ray_job names the missing 'ray' extra

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
        spinning=args.spinning,
        prompt_name=args.prompt_name,
        batch_rows=args.ray_batch_rows,
        batch_size=args.batch_size,
        batch_tokens=args.batch_tokens,
        max_seq_length=args.max_seq_length,
        on_error=args.on_error,
        skipped_path=args.skipped,
        overwrite=args.overwrite,
        progress=args.progress != "none",
    )
    summary = run_ray_job(args.input, args.output, args.model, config, address=args.ray_address)
    print(summary.describe(), file=sys.stderr)
    return 0
