"""Building blocks of the `embedrt` parsers (cli.py, cli_service.py): the help formatter, a
command with its handler, the runtime options every encoding command takes, true/false values."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .providers import DEVICES
from .session import SPINNING, SessionOptions
from .variants import PRECISIONS


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Descriptions as written; each option's default appended to its help, where it has one
    (an option whose default is None says in its help what leaving it out means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


Handler = Callable[[argparse.Namespace], int]
Subparsers = argparse._SubParsersAction  # argparse's own type for add_subparsers()


def add_command(
    sub: Subparsers, name: str, handler: Handler, summary: str, details: str = ""
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name, help=summary, description=summary + "\n" + details, formatter_class=HelpFormatter
    )
    p.set_defaults(handler=handler)
    return p


def add_runtime_options(p: argparse.ArgumentParser) -> None:
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


def true_false(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() == "true"
