"""Single-text latency, paired: the candidates take turns on the same texts, block after block.

    python bench/latency.py --artifact artifacts/all-MiniLM-L6-v2 --st-model DIR \
        --corpus paragraphs --texts 300 --out bench/results/latency_paragraphs

Why paired: this machine's speed moves by tens of percent for seconds to minutes at a time (one
paragraph through the same int8 session ran in 2.7-2.9 ms for a while, then in 4.1-4.3 ms, both
threads on their own CPU and busy all the time: the host, not the process). throughput.py
measures each candidate's 200 single texts in one stretch, so each candidate sees its own
weather. Here every candidate stays loaded in its own process (bench/worker.py --paired), and
the parent hands each block of --block texts to every candidate in turn, in an order shuffled
per block (seeded), so each candidate's p50/p95/p99 cover the same texts in the same minutes,
and each text's time over the baseline's on it gives a per-text ratio. The JSON keeps every
time, in text order.

A turn starts with --warm untimed runs, on the texts before the block: after another
candidate's turn the first runs are slower for a few runs (weights evicted from the caches),
by up to 5x for a 1 ms sentence. And a turn starts only once the last candidate's process has
used no CPU for --gap-ms: sentence-transformers' torch threads spin for about 6 ms after each
call (7 ms of CPU), which took the next candidate's CPU. A fixed idle gap of 200 ms made the
next runs slower still (this VM's idle CPUs wake slowly), so the wait ends as soon as that
process is quiet.

By default the candidates include the floors (kernel_floor.py, FLOORS): the model's matrix
products and attention alone, so that each run also says how much of a latency target ONNX
Runtime's kernels leave for the rest of the graph. An artifact they cannot be built for (no int8
variant, a Dense head) runs without them, the reason in the results.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import KINDS, build_corpus, write_corpus  # noqa: E402
from machine import describe  # noqa: E402
from throughput import BASELINE, LOCAL, runnable, worker_command, write_json  # noqa: E402

from embedrt.session import SPINNING, SessionOptions  # noqa: E402

PERCENTILES = (50, 95, 99)
# The model's matrix products and attention alone, in each layout kernel_floor.py builds.
FLOORS = ("floor-fp32", "floor-fp32-qkv", "floor-int8")
REPLY_TIMEOUT_S = 600  # one text alone, however slow the candidate


class Candidate:
    """One candidate's worker process, loaded once, timing one text per request."""

    def __init__(self, name: str, args: argparse.Namespace, corpus: Path) -> None:
        cmd, env = worker_command(sys.executable, name, args, corpus)
        self.name = name
        # stderr to a file: a pipe nobody reads would stall a chatty worker once it is full
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [*cmd, "--paired"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        if self._reply() != "ready":
            self._fail("did not start")

    def _reply(self) -> str:
        assert self.proc.stdout is not None
        # one line answers each request, so nothing waits in the reader's buffer meanwhile
        if not select.select([self.proc.stdout], [], [], REPLY_TIMEOUT_S)[0]:
            self._fail(f"no answer in {REPLY_TIMEOUT_S} s")
        line = self.proc.stdout.readline()
        if not line:
            self._fail("ended")
        return line.strip()

    def _fail(self, what: str) -> NoReturn:
        self.proc.kill()
        self.proc.wait()
        self.log.seek(0)
        tail = self.log.read().strip().splitlines()[-3:]
        raise SystemExit(f"{self.name} failed ({what}): {' / '.join(tail) or 'no output'}")

    def time(self, text: str) -> float:
        """Seconds the candidate took to encode text alone."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(text) + "\n")
        self.proc.stdin.flush()
        reply = self._reply()
        try:
            return float(reply)
        except ValueError:
            self._fail(f"answered {reply[:60]!r}")

    def close(self) -> None:
        """End the worker: stdin closed, then killed if it does not exit within a minute."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.log.close()


def paired_times(
    candidates: list[Candidate], texts: list[str], block: int, warm: int, gap_s: float
) -> dict[str, list[float]]:
    """Every text timed on every candidate: blocks of texts, each block run by every candidate
    in turn (turn_orders), after `warm` untimed runs on the texts before the block that bring
    its weights back into the caches the others' runs took them from (the first runs of a turn
    are slower for a few runs); after each turn, until that candidate's threads have been idle
    for gap_s (wait_idle)."""
    times: dict[str, list[float]] = {c.name: [] for c in candidates}
    starts = range(0, len(texts), block)
    for start, order in zip(starts, turn_orders(len(starts), len(candidates)), strict=True):
        chunk = texts[start : start + block]
        for c in (candidates[k] for k in order):
            for j in range(1, warm + 1):
                c.time(texts[(start - j) % len(texts)])
            times[c.name].extend(c.time(text) for text in chunk)
            wait_idle(c.proc.pid, gap_s)
    return times


def floors_skipped(names: list[str], artifact: Path) -> dict[str, str]:
    """The floor candidates among names that cannot be built for this artifact, and why (a
    model without an int8 graph, or whose products are not whole layers)."""
    floors = [name for name in names if name.startswith("floor-")]
    if not floors:
        return {}
    from kernel_floor import floor_layout

    try:
        floor_layout(artifact)
    except ValueError as e:
        print(f"{', '.join(floors)} skipped: {e}", file=sys.stderr)
        return {name: str(e) for name in floors}
    return {}


def wait_idle(pid: int, quiet_s: float, limit_s: float = 2.0) -> None:
    """Return once process pid's threads have used no CPU for quiet_s (at most limit_s): torch's
    OpenMP threads spin for about 6 ms after a call and would take the next turn's CPU."""
    start = time.monotonic()
    last, still = cpu_ns(pid), start
    while time.monotonic() - start < limit_s:
        time.sleep(0.001)
        now = cpu_ns(pid)
        if now is None or last is None:  # it ended: its next request, if any, names it
            return
        if now - last > 100_000:  # over 0.1 ms of CPU in the last ~1 ms: still busy
            still = time.monotonic()
        elif time.monotonic() - still >= quiet_s:
            return
        last = now


def cpu_ns(pid: int) -> int | None:
    """CPU time all of process pid's threads have used, in ns (Linux: /proc/PID/task/*/schedstat);
    None once the process is gone."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            pass
    return total


def turn_orders(blocks: int, count: int, seed: int = 0) -> list[list[int]]:
    """The order the `count` candidates run each block in: a seeded shuffle per block, so that
    no candidate always follows the same other one (whose threads and cache footprint the
    next turn inherits), nor always goes first."""
    rng = np.random.default_rng(seed)
    return [[int(k) for k in rng.permutation(count)] for _ in range(blocks)]


def summary(times: dict[str, list[float]], baseline: str) -> dict[str, dict]:
    """Per candidate: percentiles in ms, their ratios to the baseline's, and the median of the
    per-text ratios (each text's time over the baseline's time on the same text)."""
    ms = {name: np.array(t) * 1000 for name, t in times.items()}
    if len({len(m) for m in ms.values()}) > 1:
        raise ValueError(
            f"candidates timed different numbers of texts: { {n: len(m) for n, m in ms.items()} }"
        )
    base = ms.get(baseline)
    out: dict[str, dict] = {}
    for name, m in ms.items():
        r: dict = {"texts": len(m)}
        r |= {f"p{p}_ms": round(float(np.percentile(m, p)), 2) for p in PERCENTILES}
        if base is not None:
            for p in PERCENTILES:
                ratio = np.percentile(m, p) / np.percentile(base, p)
                r[f"p{p}_vs_baseline"] = round(float(ratio), 4)
            r["per_text_ratio_median"] = round(float(np.median(m / base)), 4)
        out[name] = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", type=Path, required=True)
    ap.add_argument("--st-model", type=Path, required=True)
    ap.add_argument("--corpus", choices=KINDS, default="paragraphs", help="see bench/corpus.py")
    ap.add_argument("--texts", type=int, default=300, help="texts timed, each on every candidate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spinning", choices=SPINNING, default=SessionOptions.spinning)
    ap.add_argument("--block", type=int, default=20, help="texts a candidate runs per turn")
    ap.add_argument("--warm", type=int, default=3, help="untimed runs that start each turn")
    ap.add_argument(
        "--gap-ms", type=float, default=5.0, help="how long a turn's process must sit idle"
    )
    ap.add_argument(
        "--candidates",
        default=",".join(LOCAL + FLOORS),
        help="comma-separated worker.py candidates (default: %(default)s)",
    )
    ap.add_argument("--baseline", default=BASELINE, help="what the ratios divide by")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.batch_size, args.latency_n = 32, 0  # worker.py's warm-up batch; no latency phase

    texts = build_corpus(args.texts, kind=args.corpus)
    names = runnable(args.candidates, args.artifact)
    skipped = floors_skipped(names, args.artifact)
    names = [name for name in names if name not in skipped]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    corpus = args.out.parent / f".corpus-{os.getpid()}.jsonl"
    write_corpus(corpus, texts)
    candidates: list[Candidate] = []
    try:
        for name in names:
            print(f"loading {name} ...", file=sys.stderr, flush=True)
            candidates.append(Candidate(name, args, corpus))
        times = paired_times(candidates, texts, args.block, args.warm, args.gap_ms / 1000)
    finally:
        corpus.unlink(missing_ok=True)
        for c in candidates:
            c.close()
    results = summary(times, args.baseline)
    meta = {
        "machine": describe(),
        "artifact": str(args.artifact),
        "corpus": args.corpus,
        "texts": len(texts),
        "threads": args.threads,
        "spinning": args.spinning,
        "block": args.block,
        "warm": args.warm,
        "gap_ms": args.gap_ms,
        "baseline": args.baseline,
        "skipped": skipped,
        "times_ms": {name: [round(t * 1000, 4) for t in ts] for name, ts in times.items()},
        "command": "python " + " ".join(sys.argv),
    }
    write_json(args.out, meta, results)
    lines = [
        f"Single-text latency, paired: {len(texts)} {args.corpus} texts, each encoded alone by "
        f"every candidate, in blocks of {args.block} texts that the candidates run in turn (in an "
        f"order shuffled per block; {args.warm} untimed runs first; the next turn once the last "
        f"one's process used no CPU for {args.gap_ms:g} ms), {args.threads} threads, "
        f"spinning {args.spinning}; {meta['machine']}",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"| candidate | p50 / p95 / p99 ms | vs {args.baseline}: p50 / p95 / p99 "
        "| per-text ratio, median |",
        "|---|---|---|---|",
    ]
    for name, r in results.items():
        vs = (
            " / ".join(f"{r[f'p{p}_vs_baseline']}x" for p in PERCENTILES)
            if args.baseline in results
            else ""
        )
        lines.append(
            f"| {name} | {' / '.join(str(r[f'p{p}_ms']) for p in PERCENTILES)} | {vs} "
            f"| {r.get('per_text_ratio_median', '')} |"
        )
    if any(name in results for name in FLOORS):
        lines += [
            "",
            "floor-fp32, floor-fp32-qkv, floor-int8: the model's linear products and attention "
            "alone (bench/kernel_floor.py), in fp32 with Q, K and V apart or as one product as "
            "the opt graph has them, and as the int8 graph runs them: what a graph of that "
            "layout would take if its other nodes took no time.",
        ]
    lines += [f"{name}: skipped, {why}" for name, why in skipped.items()]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
