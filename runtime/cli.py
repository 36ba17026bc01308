"""The `embedrt` command line: each command's options, parsed into typed values here only.

Defaults come from the config classes (BatchPlan, JobConfig, BatchingConfig, Limits,
ServerConfig, RayJobConfig), so a default is written once. What each command does is in
commands.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import commands
from .batching import BatchPlan
from .errors import EXIT_IO, EmbedrtError, exit_status
from .jobs.config import ON_ERROR, JobConfig
from .jobs.progress import MODES as PROGRESS
from .jobs.writers import FORMATS
from .providers import DEVICES
from .ray.config import RayJobConfig
from .serve.config import BatchingConfig, ConnectionLimits, Limits, ServerConfig
from .session import SPINNING, SessionOptions
from .variants import PRECISIONS

DESCRIPTION = """\
Run a fine-tuned sentence-transformers model without torch: export it to one ONNX graph
(pooling and normalization fused in, checked against sentence-transformers), then encode with
it in-process, over files, behind HTTP or on Ray.

  embedrt export MODEL_DIR ARTIFACT       build and verify an artifact (extra 'export')
  embedrt info ARTIFACT                   what it holds and where it would run
  embedrt similarity ARTIFACT "a" "b"     encode texts, print their cosine similarities
  embedrt embed IN -m ARTIFACT -o OUT     batch job over a file, resumable (extra 'jobs')
  embedrt serve -m ARTIFACT               HTTP service, OpenAI and TEI routes (extra 'serve')
  embedrt train --data PAIRS --out DIR    fine-tune by the model card's recipe (extra 'train')
  embedrt bench -m ARTIFACT               latency and throughput per batch size x length

An error is one line saying what to do, and an exit status: 2 an option or the input is
wrong, 3 the artifact, the device or an extra is (missing, corrupted, not installed), 4 a file
could not be read or written (a full disk: `embedrt embed ... --resume` continues), 130
interrupted.
"""
LABELS = (
    "auto",
    "similarity",
    "distance",
)  # train: labels as similarity (checked), as given, 1 - x


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written; each option's default appended to its help, where it has one
    (an option whose default is None says in its help what leaving it out means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except EmbedrtError as e:
        print(f"embedrt {args.command}: error: {e}", file=sys.stderr)
        return exit_status(e)
    except OSError as e:  # a file that cannot be read or written: one line, not a traceback
        if isinstance(e, ConnectionError):  # not a file (a Ray cluster, a socket): as it is
            raise
        where = f" ({e.filename})" if e.filename else ""
        print(f"embedrt {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_IO


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedrt",
        description=DESCRIPTION,
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _export(sub)
    _info(sub)
    _similarity(sub)
    _embed(sub)
    _serve(sub)
    _train(sub)
    _bench(sub)
    return parser


Handler = Callable[[argparse.Namespace], int]
Subparsers = argparse._SubParsersAction  # argparse's own type for add_subparsers()


def _command(
    sub: Subparsers, name: str, handler: Handler, summary: str, details: str = ""
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name, help=summary, description=summary + "\n" + details, formatter_class=_Formatter
    )
    p.set_defaults(handler=handler)
    return p


def _runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=DEVICES, help="auto: TensorRT > CUDA > CPU")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: int8 on CPU if it passed, fp16 on GPU",
    )
    p.add_argument("--threads", type=int, help="ONNX Runtime threads (default: every CPU allowed)")
    p.add_argument("--streams", type=int, help="CPU: batches at once (default: one per thread)")
    p.add_argument(
        "--max-seq-length",
        type=int,
        help="truncate at N tokens, at most the artifact's (default: the artifact's)",
    )
    p.add_argument(
        "--spinning",
        choices=SPINNING,
        default=SessionOptions.spinning,
        help="threads spin-wait: run = only while a run is in flight",
    )


def _export(sub: Subparsers) -> None:
    p = _command(
        sub,
        "export",
        commands.export,
        "sentence-transformers folder -> artifact",
        """
Writes model.onnx (fp32, portable) and the optimized variants, each checked against
sentence-transformers and gated; a variant that fails its gate is left out, and `embedrt info`
says why. Needs: pip install 'embedrt[export]'.""",
    )
    p.add_argument("src", help="model folder, or 'all-MiniLM-L6-v2' for the pinned base model")
    p.add_argument("out", help="artifact directory to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--no-parity", action="store_true", help="skip the sentence-transformers check")
    p.add_argument(
        "--max-seq-length",
        type=int,
        metavar="N",
        help="truncate at N tokens, not the model's max_seq_length (as model.max_seq_length = N "
        "in sentence-transformers); bounds a long-context model's memory per text",
    )
    p.add_argument(
        "--variants", default="opt,int8,fp16", help="comma list of opt, int8, fp16; none"
    )
    p.add_argument(
        "--calibration",
        metavar="FILE",
        help="UTF-8 texts, one per line, to calibrate int8 on (the first 512 distinct are used; "
        "default: 512 English STS-B sentences shipped with embedrt)",
    )
    p.add_argument(
        "--eval-pairs",
        metavar="FILE",
        help="UTF-8 TSV sentence1<TAB>sentence2<TAB>score, no header, to gate int8 on "
        "(Spearman, cosine to fp32, nearest neighbours; default: English STS-B dev and test)",
    )
    p.add_argument(
        "--verbose", action="store_true", help="also the libraries' progress and warnings"
    )


def _info(sub: Subparsers) -> None:
    p = _command(
        sub,
        "info",
        commands.info,
        "what an artifact holds, and where it would run",
        """
Variants with their file, size, gate and figures; the providers ONNX Runtime offers here and
the one chosen.""",
    )
    p.add_argument("artifact", help="artifact directory")
    _runtime_options(p)
    p.add_argument("--json", action="store_true", help="print JSON, for scripts")


def _similarity(sub: Subparsers) -> None:
    p = _command(sub, "similarity", commands.similarity, "cosine similarity table of texts")
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("texts", nargs="*", help="texts to compare (default: sample sentences)")
    _runtime_options(p)


def _embed(sub: Subparsers) -> None:
    job, ray, plan = JobConfig(), RayJobConfig(), BatchPlan()
    p = _command(
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
    _runtime_options(p)
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


def _serve(sub: Subparsers) -> None:
    server, b, limits, conn = ServerConfig(), BatchingConfig(), Limits(), ConnectionLimits()
    p = _command(
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
    _runtime_options(p)
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
        type=_true_false,
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


def _true_false(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def _train(sub: Subparsers) -> None:
    p = _command(
        sub,
        "train",
        commands.train,
        "fine-tune a model on labelled pairs",
        """
The model card's recipe (CosineSimilarityLoss, batch 16, 1 epoch, lr 5e-5, seed 42), after
checking that the labels read as similarity; evaluated before and after. Options left out take
the recipe's values. Needs: pip install 'embedrt[train]'.""",
    )
    p.add_argument("--data", required=True, help="pairs file (.jsonl, .csv, .parquet) or 'snli'")
    p.add_argument("--out", required=True, help="folder for the trained model")
    p.add_argument("--base", help="model folder or name (default: all-MiniLM-L6-v2)")
    p.add_argument("--labels", default="auto", choices=LABELS, help="how to read the labels")
    p.add_argument("--pairs", type=int, help="snli: pairs sampled (default: 1000)")
    p.add_argument("--snli-labels", choices=("meaning", "class-id"), help="default: meaning")
    p.add_argument("--heldout", type=int, help="snli: held-out test pairs (default: 1000)")
    p.add_argument("--batch-size", type=int, help="pairs per step")
    p.add_argument("--epochs", type=int, help="passes over the pairs")
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--seed", type=int, help="seeds sampling, order and dropout")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (default: epochs)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="torch device")
    p.add_argument("--cache-dir", help="downloads (default: ~/.cache/embedrt)")
    p.add_argument("--force", action="store_true", help="retrain even if --out is up to date")


def _bench(sub: Subparsers) -> None:
    p = _command(
        sub,
        "bench",
        commands.bench,
        "latency and throughput per batch x length",
        """
Synthetic batches of exactly each shape from the artifact's own tokenizer: warm-up, timed runs,
p50/p95/p99 of one batch, texts/s and tokens/s.""",
    )
    p.add_argument("-m", "--model", required=True, help="artifact directory")
    _runtime_options(p)
    p.add_argument("--variant", help="a variant by name (overrides --precision)")
    p.add_argument("--batch-sizes", default="1,8,32,128", help="rows per batch, comma list")
    p.add_argument("--seq-lens", default="16,64,256", help="tokens per row, comma list")
    p.add_argument("--runs", type=int, default=20, help="timed runs per cell, after 3 warm-ups")
    p.add_argument("--json", help="also write the results to this JSON file")


if __name__ == "__main__":
    sys.exit(main())
