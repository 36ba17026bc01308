"""The `embedrt` command: export, info, similarity. Strings become typed options here only."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .errors import EmbedrtError

SAMPLE_SENTENCES = (
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "A woman is slicing onions in the kitchen.",
    "Vegetables are being cut.",
    "The stock market fell sharply on Monday.",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embedrt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="sentence-transformers folder -> artifact directory")
    p.add_argument("src", help="model folder, or 'all-MiniLM-L6-v2' for the pinned base model")
    p.add_argument("out", help="artifact directory to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument(
        "--no-parity", action="store_true", help="skip the check against sentence-transformers"
    )
    p.add_argument(
        "--variants",
        default="opt,int8,fp16",
        help="optimized variants to build besides fp32 model.onnx: comma list of "
        "opt, int8, fp16, or 'none'",
    )
    p.set_defaults(handler=_export)

    p = sub.add_parser("info", help="manifest, variants, available and chosen providers")
    p.add_argument("artifact")
    _add_runtime_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_info)

    p = sub.add_parser("similarity", help="encode texts and print their cosine similarity table")
    p.add_argument("artifact")
    p.add_argument("texts", nargs="*", help="texts to compare (default: sample sentences)")
    _add_runtime_options(p)
    p.set_defaults(handler=_similarity)

    p = sub.add_parser("embed", help="embed a file of texts into .npy or .parquet (resumable job)")
    p.add_argument("input", help=".txt, .jsonl, .csv, .tsv (each also .gz) or .parquet")
    p.add_argument("-m", "--model", required=True, help="artifact directory")
    p.add_argument("-o", "--output", required=True, help=".npy or .parquet file to write")
    p.add_argument("--text-field", default="text", help="field / column holding the text")
    p.add_argument("--id-field", default=None, help="field holding row ids (default: line numbers)")
    p.add_argument("--format", choices=("npy", "parquet"), help="default: from the output's suffix")
    _add_runtime_options(p)
    p.add_argument(
        "--spinning",
        choices=("on", "off"),
        default="off",
        help="ONNX Runtime idle threads spin (off: they yield to the job's other threads)",
    )
    p.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per batch")
    p.add_argument("--batch-size", type=int, default=32, help="rows per batch")
    p.add_argument("--shard-rows", type=int, default=8192, help="rows per shard (unit of resume)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted job")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail", help="on a bad row")
    p.add_argument("--skipped", help="side file of skipped rows (default OUTPUT.skipped.jsonl)")
    p.add_argument("--progress", choices=("auto", "bar", "log", "none"), default="auto")
    p.add_argument("--log-every", type=float, default=30.0, help="seconds between log lines")
    p.add_argument(
        "--ray",
        action="store_true",
        help="run on Ray Data: parquet file or directory "
        "(local path or URI) in, directory of parquet files out",
    )
    p.add_argument(
        "--ray-address", help="--ray: cluster to join (default RAY_ADDRESS, else a local one)"
    )
    p.add_argument(
        "--actors", type=int, help="--ray: embedding actors (default cluster CPUs / --actor-cpus)"
    )
    p.add_argument(
        "--actor-cpus", type=float, default=1.0, help="--ray: CPUs per actor = its threads"
    )
    p.add_argument(
        "--actor-gpus", type=float, default=0.0, help="--ray: GPUs per actor (> 0: on the GPU)"
    )
    p.add_argument("--ray-batch-rows", type=int, default=1024, help="--ray: rows per actor call")
    p.set_defaults(handler=_embed)

    p = sub.add_parser(
        "serve",
        help="HTTP embedding service (OpenAI /v1/embeddings, TEI /embed) with dynamic batching",
    )
    p.add_argument("-m", "--model", required=True, help="artifact directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8080)
    _add_runtime_options(p)
    p.add_argument("--max-batch-tokens", type=int, default=16384, help="tokens per batching round")
    p.add_argument(
        "--max-batch-requests", type=int, default=None, help="requests per batching round"
    )
    p.add_argument(
        "--max-wait-ms", type=float, default=2.0, help="wait for a round to fill when idle"
    )
    p.add_argument("--max-queue", type=int, default=1024, help="waiting requests before 429")
    p.add_argument(
        "--batch-size", type=int, default=32, help="most rows per inference run in a round"
    )
    p.add_argument(
        "--run-cost",
        type=int,
        default=None,
        help="fixed cost of one inference run in tokens (default: 32 CPU, 512 GPU)",
    )
    p.add_argument(
        "--no-batching", action="store_true", help="one request per inference (baseline)"
    )
    p.add_argument(
        "--spinning",
        choices=("on", "off"),
        default="off",
        help="ONNX Runtime idle threads spin (off: they yield to the event loop)",
    )
    p.add_argument("--max-inputs", type=int, default=2048, help="texts per request before 413")
    p.add_argument("--max-body-bytes", type=int, default=4 << 20, help="request body before 413")
    p.add_argument(
        "--api-key-file", help="file holding the bearer token every route but /health needs"
    )
    p.add_argument(
        "--model-name", help="model id in responses (default: the artifact's source model)"
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(handler=_serve)

    p = sub.add_parser(
        "train",
        help="fine-tune a sentence-transformers model on labelled pairs "
        "(the model card's recipe), checking label orientation first",
    )
    p.add_argument(
        "--data",
        required=True,
        help="pairs file (.jsonl, .csv, .parquet with sentence_0, "
        "sentence_1, label in [0, 1]) or 'snli' (pinned download, cached)",
    )
    p.add_argument("--out", required=True, help="folder for the trained model (exportable as is)")
    p.add_argument("--base", default="all-MiniLM-L6-v2", help="model folder or known model name")
    p.add_argument(
        "--labels",
        default="auto",
        choices=("auto", "similarity", "distance"),
        help="auto: similarity, stop if the base model says they are inverted; "
        "similarity: train as given; distance: train on 1 - label",
    )
    p.add_argument("--pairs", type=int, default=1000, help="snli: pairs sampled for training")
    p.add_argument(
        "--snli-labels",
        default="meaning",
        choices=("meaning", "class-id"),
        help="snli: entailment 1.0 (meaning), or 0.0 as the model card did (class-id)",
    )
    p.add_argument("--heldout", type=int, default=1000, help="snli: held-out test pairs evaluated")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--max-steps", type=int, default=-1, help="stop after this many steps (-1: epochs)"
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--cache-dir", help="where downloads are kept (default ~/.cache/embedrt)")
    p.add_argument("--force", action="store_true", help="retrain even if --out is up to date")
    p.set_defaults(handler=_train)

    p = sub.add_parser(
        "bench", help="latency and throughput of an artifact per batch size x length"
    )
    p.add_argument("-m", "--model", required=True, help="artifact directory")
    _add_runtime_options(p)
    p.add_argument("--variant", help="a variant by name (overrides --precision)")
    p.add_argument("--batch-sizes", default="1,8,32,128", help="comma list of rows per batch")
    p.add_argument("--seq-lens", default="16,64,256", help="comma list of tokens per row")
    p.add_argument("--runs", type=int, default=20, help="timed runs per cell (after 3 warm-ups)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.set_defaults(handler=_bench)

    # Each command: a parser here, set_defaults(handler=...), and a handler below that imports
    # its feature module lazily (so `embedrt info` never pays for starlette, pyarrow or torch).

    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except EmbedrtError as e:
        print(f"embedrt {args.command}: error: {e}", file=sys.stderr)
        return 2


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "tensorrt"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "int8"))
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument(
        "--streams",
        type=int,
        default=None,
        help="CPU: runs at once, each on threads/streams cores (default: one per thread, "
        "at most 8)",
    )


def _export(args: argparse.Namespace) -> int:
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


def _info(args: argparse.Namespace) -> int:
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


def _similarity(args: argparse.Namespace) -> int:
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


def _embed(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .encoder import Encoder
    from .jobs import JobConfig, run_job

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


def _embed_ray(args: argparse.Namespace) -> int:
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


def _serve(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .serve import BatchingConfig, Limits, ServerConfig, serve  # serve() names a missing extra

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
    return serve(
        args.model,
        config,
        args.device,
        args.precision,
        threads=args.threads,
        spinning=args.spinning == "on",
        streams=args.streams,
    )


def _train(args: argparse.Namespace) -> int:
    import shlex

    from .export.train.recipe import (
        Recipe,  # needs the 'train' extra; the import names it if missing
    )
    from .export.train.snli import default_cache_dir
    from .export.train.trainer import train_model, training_data

    cache = args.cache_dir or default_cache_dir()
    pairs, evals = training_data(
        args.data,
        cache,
        pairs=args.pairs,
        seed=args.seed,
        snli_labels=args.snli_labels,
        heldout=args.heldout,
    )
    recipe = Recipe(
        base=args.base,
        batch_size=args.batch_size,
        epochs=args.epochs,
        learning_rate=args.lr,
        seed=args.seed,
        max_steps=args.max_steps,
    )
    given = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "handler") and v not in (None, False)
    }
    command = "embedrt train " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {shlex.quote(str(v))}")
        for k, v in given.items()
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


def _bench(args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
