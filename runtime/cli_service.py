"""The options of the `embedrt` commands that run for long: `embed` (a batch job over a file,
local or on Ray) and `serve` (the HTTP service). Their defaults come from the config classes
(BatchPlan, JobConfig, RayJobConfig, BatchingConfig, Limits, ServerConfig), so a default is
written once."""

from __future__ import annotations

from . import commands
from .batching import BatchPlan
from .cli_parts import Subparsers, add_command, add_runtime_options, true_false
from .jobs.config import ON_ERROR, JobConfig
from .jobs.progress import MODES as PROGRESS
from .jobs.writers import FORMATS
from .ray.config import RayJobConfig
from .serve.config import BatchingConfig, ConnectionLimits, Limits, ServerConfig


def add_embed(sub: Subparsers) -> None:
    job, ray, plan = JobConfig(), RayJobConfig(), BatchPlan()
    p = add_command(
        sub,
        "embed",
        commands.embed,
        "embed a file of texts (resumable job)",
        """
A bad row stops the job before any work (or is skipped and listed); a killed job continues
with --resume, byte-identical. With --ray, the same job on Ray Data across a cluster: parquet
in, a directory of parquet files out. Needs: pip install 'embedrt[jobs]' ('embedrt[ray]').""",
    )
    p.add_argument("input", help=".txt, .jsonl, .csv, .tsv (each also .gz) or .parquet")
    p.add_argument("-m", "--model", required=True, help="artifact directory")
    p.add_argument("-o", "--output", required=True, help=".npy or .parquet file to write")
    p.add_argument("--text-field", default=job.text_field, help="field / column of the text")
    p.add_argument("--id-field", help="field of row ids (default: line numbers)")
    p.add_argument("--format", choices=FORMATS, help="default: from the output's suffix")
    p.add_argument(
        "--prompt-name", help="the model's prompt to prepend, e.g. document (default: its default)"
    )
    add_runtime_options(p)
    p.add_argument("--batch-tokens", type=int, default=plan.max_tokens, help="padded tokens/batch")
    p.add_argument("--batch-size", type=int, default=job.batch_size, help="rows per batch")
    p.add_argument("--shard-rows", type=int, default=job.shard_rows, help="unit of resume")
    p.add_argument("--resume", action="store_true", help="continue an interrupted job")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--on-error", choices=ON_ERROR, default=job.on_error, help="at a bad row")
    p.add_argument("--skipped", help="skipped rows' file (default: OUTPUT.skipped.jsonl)")
    p.add_argument("--progress", choices=PROGRESS, default=job.progress, help="auto: bar on a tty")
    p.add_argument("--log-every", type=float, default=job.log_interval_s, help="seconds per line")
    p.add_argument("--ray", action="store_true", help="run on Ray Data (parquet in and out)")
    p.add_argument("--ray-address", help="--ray: cluster (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--actors", type=int, help="--ray: actors (default: cluster CPUs / actor CPUs)")
    p.add_argument("--actor-cpus", type=float, default=ray.actor_cpus, help="--ray: per actor")
    p.add_argument("--actor-gpus", type=float, default=ray.actor_gpus, help="--ray: per actor")
    p.add_argument("--ray-batch-rows", type=int, default=ray.batch_rows, help="--ray: per call")


def add_serve(sub: Subparsers) -> None:
    server, b, limits, conn = ServerConfig(), BatchingConfig(), Limits(), ConnectionLimits()
    p = add_command(
        sub,
        "serve",
        commands.serve,
        "HTTP embedding service, dynamic batching",
        """
Routes: POST /v1/embeddings (OpenAI), POST /embed (text-embeddings-inference), GET /health,
/info, /v1/models, /metrics. SIGTERM drains accepted requests. Needs: pip install
'embedrt[serve]'.""",
    )
    p.add_argument("-m", "--model", required=True, help="artifact directory")
    p.add_argument("--host", default=server.host, help="address to bind")
    p.add_argument("--port", type=int, default=server.port, help="port (0: any free one)")
    add_runtime_options(p)
    p.add_argument("--max-batch-tokens", type=int, default=b.max_batch_tokens, help="per round")
    p.add_argument("--max-batch-requests", type=int, help="per round (default: no limit)")
    p.add_argument("--max-wait-ms", type=float, default=b.max_wait_ms, help="an idle round's wait")
    p.add_argument("--max-queue", type=int, default=b.max_queue, help="waiting requests, then 429")
    p.add_argument("--batch-size", type=int, default=b.batch_size, help="rows per inference run")
    p.add_argument(
        "--run-cost", type=int, help="one run's fixed cost in tokens (default: device's)"
    )
    p.add_argument("--no-batching", action="store_true", help="one request per run (baseline)")
    p.add_argument("--fifo", action="store_true", help="rounds in arrival order, as TEI")
    p.add_argument("--max-inputs", type=int, default=limits.max_inputs, help="texts, then 413")
    p.add_argument("--max-body-bytes", type=int, default=limits.max_body_bytes, help="then 413")
    p.add_argument("--max-request-tokens", type=int, help="per request, then 413 (default: any)")
    p.add_argument("--max-header-bytes", type=int, default=conn.max_header_bytes, help="then 431")
    p.add_argument("--read-timeout", type=float, default=conn.read_timeout_s, help="s, then 408")
    p.add_argument("--max-connections", type=int, help="(default: 1024, within the fd limit)")
    p.add_argument(
        "--graceful-timeout",
        type=float,
        default=server.graceful_timeout_s,
        help="s a SIGTERM waits, then 503",
    )
    p.add_argument("--api-key-file", help="bearer token every route but /health requires")
    p.add_argument("--model-name", help="model id in responses (default: the artifact's source)")
    p.add_argument(
        "--auto-truncate",
        type=true_false,
        nargs="?",
        const=True,
        default=server.auto_truncate,
        metavar="true|false",
        help="cut inputs past max_seq_length where a request does not say (as TEI)",
    )
    p.add_argument(
        "--prompt-name",
        "--default-prompt-name",
        dest="prompt_name",
        help="the model's prompt where a request names none (default: the model's default)",
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
