"""What an export shows while it runs: its stages with their outcome, not the libraries' chatter.

export_model reports each stage (graph, parity, each variant) to a `Progress` as it starts and
ends; `StageLines` is the one `embedrt export` uses, a line per stage with its time.
`quiet_libraries` silences what transformers, sentence-transformers, torch.onnx and ONNX
Runtime's quantizer print on their own (progress bars, advice, tracer warnings) for a with
block and restores every setting after it; errors still raise.

    with quiet_libraries():
        export_model("models/ft", "artifacts/ft", progress=StageLines(sys.stderr))
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO

# Loggers set to ERROR inside quiet_libraries ("" is the root logger: ONNX Runtime's quantizer
# writes its "consider pre-processing" advice there with logging.warning). transformers' own
# logger is set through its verbosity functions, which keep its handler.
_LOGGERS = ("", "onnxruntime", "sentence_transformers", "torch")


class Progress(Protocol):
    """Told of each stage of an export: `start` as it begins, `end` with its outcome."""

    def start(self, step: int, steps: int, stage: str) -> None: ...

    def end(self, outcome: str) -> None: ...


class Stages:
    """Numbers an export's stages for a Progress, or for nobody when progress is None."""

    def __init__(self, progress: Progress | None, steps: int):
        self.progress = progress
        self.steps = steps
        self.step = 0

    def start(self, stage: str) -> None:
        self.step += 1
        if self.progress is not None:
            self.progress.start(self.step, self.steps, stage)

    def end(self, outcome: str) -> None:
        if self.progress is not None:
            self.progress.end(outcome)


class StageLines:
    """A Progress writing `[2/6] parity vs sentence-transformers ... <outcome> (1.2 s)`.

    The stage's name is written when it starts (a slow stage shows what it waits for) and the
    line is finished when it ends. own_line=True gives the name its own line and repeats it with
    the outcome, for a stream that libraries write to as well (embedrt export --verbose).
    """

    def __init__(self, stream: TextIO, *, own_line: bool = False):
        self.stream = stream
        self.own_line = own_line
        self._stage = ""
        self._t0 = 0.0
        self._open = False

    def start(self, step: int, steps: int, stage: str) -> None:
        self._stage = f"[{step}/{steps}] {stage}"
        self._t0 = time.perf_counter()
        self._write(f"{self._stage} ...\n" if self.own_line else f"{self._stage} ... ")
        self._open = not self.own_line

    def end(self, outcome: str) -> None:
        took = f"({time.perf_counter() - self._t0:.1f} s)"
        self._write(
            f"{self._stage}: {outcome} {took}\n" if self.own_line else f"{outcome} {took}\n"
        )
        self._open = False

    def close(self) -> None:
        """End a stage line an error left open, so the error's message starts a line."""
        if self._open:
            self._write("failed\n")
            self._open = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence the export libraries' progress bars, warnings and log lines below ERROR for the
    with block; every setting is as before afterwards. Exceptions pass through unchanged."""
    import transformers.utils.logging as hf_logging
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    hub_bars_off = are_progress_bars_disabled()
    bars_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.onnx's tracer and deprecation warnings
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()  # "Loading weights" bars; the hub's bars too
            for name in _LOGGERS:
                logging.getLogger(name).setLevel(logging.ERROR)
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        hf_logging.set_verbosity(verbosity)
        if bars_on:
            hf_logging.enable_progress_bar()
        if hub_bars_off:
            disable_progress_bars()
        else:
            enable_progress_bars()
