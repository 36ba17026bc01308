"""Progress of a batch job: a tqdm bar on a terminal, plain periodic log lines otherwise.

    progress = Progress(total_rows, done_rows, stream=sys.stderr, mode="auto", interval_s=30)
    progress.update(rows=32, tokens=1024)      # from the thread that finishes work
    progress.close()

A bar in a log file is a mess of carriage returns, and a line every 30 s on a terminal hides
the rate; "auto" picks by whether the stream is a terminal. Rates count this run's rows only,
so a resumed job does not report the rows it skipped as fast work.
"""

from __future__ import annotations

import os
import threading
import time
from typing import IO, Any

from ..config import check_choice
from ..errors import missing_extra

MODES = ("auto", "bar", "log", "none")


class Progress:
    """Rows and tokens done; total and done count rows of the whole job (done: before this run)."""

    def __init__(
        self,
        total: int,
        done: int,
        *,
        stream: IO[str],
        mode: str = "auto",
        interval_s: float = 30.0,
        label: str = "embed",
    ):
        check_choice("progress mode", mode, MODES)
        if mode == "auto":
            mode = "bar" if _isatty(stream) else "log"
        self.total, self.done = total, done
        self.rows = self.tokens = 0  # this run
        self._stream, self._mode, self._interval, self._label = stream, mode, interval_s, label
        self._start = self._last = time.perf_counter()
        self._lock = threading.Lock()
        self._bar: Any = None
        if mode == "bar":
            try:
                from tqdm import tqdm
            except ImportError:
                raise missing_extra("tqdm", "jobs") from None
            self._bar = tqdm(
                total=total,
                initial=done,
                unit="row",
                unit_scale=True,
                file=stream,
                desc=label,
                dynamic_ncols=True,
                smoothing=0.1,
            )

    def update(self, rows: int, tokens: int) -> None:
        with self._lock:
            self.rows += rows
            self.tokens += tokens
            now = time.perf_counter()
            elapsed = max(now - self._start, 1e-9)
            if self._bar is not None:
                self._bar.set_postfix_str(f"{self.tokens / elapsed:,.0f} tok/s", refresh=False)
                self._bar.update(rows)
            elif self._mode == "log" and now - self._last >= self._interval:
                self._last = now
                print(self.line(now), file=self._stream, flush=True)

    def line(self, now: float | None = None) -> str:
        """One log line: rows done of total, rates, ETA."""
        elapsed = max((now or time.perf_counter()) - self._start, 1e-9)
        done = self.done + self.rows
        rps, tps = self.rows / elapsed, self.tokens / elapsed
        pct = 100.0 * done / self.total if self.total else 100.0
        eta = format_seconds((self.total - done) / rps) if rps > 0 else "?"
        return (
            f"{self._label}: {done:,}/{self.total:,} rows ({pct:.1f}%), {rps:,.0f} rows/s, "
            f"{tps:,.0f} tokens/s, elapsed {format_seconds(elapsed)}, ETA {eta}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _isatty(stream: IO[str]) -> bool:
    """A terminal a bar can be drawn on (a pty of 0 columns, as some runners give, is not)."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, ValueError, OSError):
        return False
