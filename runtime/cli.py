"""The `embedrt` command line: each command's options, parsed into typed values here only.

Defaults come from the config classes, so a default is written once. The long-running
commands' options (embed, serve) are in cli_service.py, the pieces every parser uses in
cli_parts.py; what each command does is in commands.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import commands
from .cli_parts import HelpFormatter, Subparsers, add_command, add_runtime_options
from .cli_service import add_embed, add_serve
from .errors import EXIT_IO, EmbedrtError, exit_status

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
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _export(sub)
    _info(sub)
    _similarity(sub)
    add_embed(sub)
    add_serve(sub)
    _train(sub)
    _bench(sub)
    return parser


def _export(sub: Subparsers) -> None:
    p = add_command(
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
    p = add_command(
        sub,
        "info",
        commands.info,
        "what an artifact holds, and where it would run",
        """
Variants with their file, size, gate and figures; the providers ONNX Runtime offers here and
the one chosen.""",
    )
    p.add_argument("artifact", help="artifact directory")
    add_runtime_options(p)
    p.add_argument("--json", action="store_true", help="print JSON, for scripts")


def _similarity(sub: Subparsers) -> None:
    p = add_command(sub, "similarity", commands.similarity, "cosine similarity table of texts")
    p.add_argument("artifact", help="artifact directory")
    p.add_argument("texts", nargs="*", help="texts to compare (default: sample sentences)")
    add_runtime_options(p)


def _train(sub: Subparsers) -> None:
    p = add_command(
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
    p = add_command(
        sub,
        "bench",
        commands.bench,
        "latency and throughput per batch x length",
        """
Synthetic batches of exactly each shape from the artifact's own tokenizer: warm-up, timed runs,
p50/p95/p99 of one batch, texts/s and tokens/s.""",
    )
    p.add_argument("-m", "--model", required=True, help="artifact directory")
    add_runtime_options(p)
    p.add_argument("--variant", help="a variant by name (overrides --precision)")
    p.add_argument("--batch-sizes", default="1,8,32,128", help="rows per batch, comma list")
    p.add_argument("--seq-lens", default="16,64,256", help="tokens per row, comma list")
    p.add_argument("--runs", type=int, default=20, help="timed runs per cell, after 3 warm-ups")
    p.add_argument("--json", help="also write the results to this JSON file")


if __name__ == "__main__":
    sys.exit(main())
