"""How ONNX Runtime's threads wait for work: spinning off, run (the default) and on, side by side.

    python bench/spinning.py --out bench/results/spinning

A run hands work to the intra-op pool's threads hundreds of times (every parallel kernel). With
spinning off each hand-off wakes a sleeping thread; "on" keeps them spin-waiting, runs or not;
"run" spins only while a run is in flight and stops when it returns (ONNX Runtime's
session.force_spinning_stop). Per graph, corpus and mode, each measurement in a fresh process,
modes alternated over --rounds rounds:

- single: Encoder.encode of one text at a time over --latency-n texts (p50, p99), and the
  process's CPU time per text (both threads' work and spin);
- batch: texts/s of encode over --batch-texts texts in batches of 32 (a graph without streams
  runs them on the all-thread session: the throughput path of fp32 and of MPNet);
- idle: the process's CPU time over one second of sleep after its runs (idle spinning);
- neighbour: the single-text run again with another process busy on one core (a pure-Python
  loop), our p50 and the neighbour's loop rate against that neighbour alone: what each mode
  takes from other work on the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import build_corpus  # noqa: E402
from machine import describe  # noqa: E402

from embedrt.session import SPINNING  # noqa: E402

GRAPHS = (  # name: (artifact, variant)
    "minilm-int8=artifacts/all-MiniLM-L6-v2:int8",
    "minilm-fp32=artifacts/all-MiniLM-L6-v2:opt",
    "mpnet-int8=artifacts/all-mpnet-base-v2:int8",
    "mpnet-fp32=artifacts/all-mpnet-base-v2:fp32",
)
# A busy neighbour: counts until SIGTERM, then prints its count per second of its own run.
NEIGHBOUR = """
import signal, sys, time
def stop(*_):
    print(n / (time.perf_counter() - t0), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
n, t0 = 0, time.perf_counter()
print("ready", flush=True)
while True:
    n += 1
"""


def neighbour_rate(work: Callable[[], object] | None, seconds: float = 1.0) -> float:
    """Loop iterations per second of a busy neighbour process while work() runs (or, with
    work None, for `seconds` alone)."""
    proc = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # started
    if work is None:
        time.sleep(seconds)
    else:
        work()
    proc.send_signal(signal.SIGTERM)
    return float(proc.communicate(timeout=30)[0])


def worker(args: argparse.Namespace) -> None:
    from embedrt import Encoder

    artifact, variant = args.graph.split(":")
    texts = build_corpus(max(args.latency_n, args.batch_texts), kind=args.corpus)
    enc = Encoder.load(artifact, device="cpu", variant=variant, threads=2, spinning=args.spinning)
    enc.encode(texts[:64])  # warm-up: arena, thread pools, the streams' session
    for t in texts[:16]:
        enc.encode([t])

    def single() -> tuple[list[float], float]:
        times, c0 = [], time.process_time()
        for t in texts[: args.latency_n]:
            s = time.perf_counter()
            enc.encode([t])
            times.append(time.perf_counter() - s)
        return times, (time.process_time() - c0) / len(times)

    alone, cpu_per_text = single()
    s = time.perf_counter()
    enc.encode(texts[: args.batch_texts], batch_size=32)
    batch_s = time.perf_counter() - s
    c0 = time.process_time()
    time.sleep(1.0)
    idle_cpu = time.process_time() - c0
    solo_rate = neighbour_rate(None)
    beside: list[list[float]] = []
    shared_rate = neighbour_rate(lambda: beside.append(single()[0]))
    shared = beside[0]

    def ms(xs: list[float], p: int) -> float:
        return round(float(np.percentile(np.array(xs) * 1e3, p)), 2)

    print(
        json.dumps(
            {
                "single_p50_ms": ms(alone, 50),
                "single_p99_ms": ms(alone, 99),
                "cpu_ms_per_text": round(cpu_per_text * 1e3, 2),
                "batch_texts_per_s": round(args.batch_texts / batch_s, 1),
                "idle_cpu_ms_per_s": round(idle_cpu * 1e3, 1),
                "neighbour_p50_ms": ms(shared, 50),
                "neighbour_rate_vs_alone": round(shared_rate / solo_rate, 3),
            }
        )
    )


def measure(args: argparse.Namespace, graph: str, corpus: str, mode: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--graph", graph, "--corpus", corpus]
    cmd += ["--spinning", mode, "--latency-n", str(args.latency_n)]
    cmd += ["--batch-texts", str(args.batch_texts)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"{graph} {corpus} {mode}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--graphs", default=",".join(GRAPHS), help="name=artifact:variant, ...")
    ap.add_argument("--corpora", default="sentences,paragraphs")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--latency-n", type=int, default=100)
    ap.add_argument("--batch-texts", type=int, default=128)
    ap.add_argument("--out", default="bench/results/spinning")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--graph", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--spinning", choices=SPINNING, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    load_before = os.getloadavg()[0]
    graphs = dict(g.split("=", 1) for g in args.graphs.split(","))
    results: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for name, graph in graphs.items():
        for corpus in args.corpora.split(","):
            runs: dict[str, list[dict]] = {m: [] for m in SPINNING}
            for r in range(args.rounds):
                for mode in SPINNING if r % 2 == 0 else SPINNING[::-1]:
                    runs[mode].append(measure(args, graph, corpus, mode))
            results.setdefault(name, {})[corpus] = runs
            print(name, corpus, json.dumps({m: median(v) for m, v in runs.items()}), flush=True)
    machine = f"{describe()}, 1-min load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    write(args, graphs, results, machine)


def median(runs: list[dict]) -> dict:
    return {k: round(float(np.median([r[k] for r in runs])), 3) for k in runs[0]}


def write(args: argparse.Namespace, graphs: dict, results: dict, machine: str) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python bench/spinning.py", *sys.argv[1:]])
    doc = {"machine": machine, "command": command, "graphs": graphs, "results": results}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"ONNX Runtime spinning off / run (default) / on, 2 threads; CPU ({machine}); medians of "
        f"{args.rounds} alternated rounds, a fresh process per measurement",
        "",
        "| graph | corpus | spinning | single p50 ms | vs off | single p99 ms | CPU ms per text "
        "| batch-32 texts/s | vs off | idle CPU ms/s | p50 beside a busy neighbour ms "
        "| neighbour's rate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, corpora in results.items():
        for corpus, runs in corpora.items():
            med = {m: median(v) for m, v in runs.items()}
            off = med["off"]
            for mode, r in med.items():
                lines.append(
                    f"| {name} | {corpus} | {mode} | {r['single_p50_ms']:.2f} | "
                    f"{r['single_p50_ms'] / off['single_p50_ms']:.2f}x | {r['single_p99_ms']:.2f} | "
                    f"{r['cpu_ms_per_text']:.2f} | {r['batch_texts_per_s']:.1f} | "
                    f"{r['batch_texts_per_s'] / off['batch_texts_per_s']:.2f}x | "
                    f"{r['idle_cpu_ms_per_s']:.1f} | {r['neighbour_p50_ms']:.2f} | "
                    f"{r['neighbour_rate_vs_alone']:.2f} |"
                )
    lines += [
        "",
        f"`{command}`",
        "",
        f"Graphs: {', '.join(f'{k} = {v}' for k, v in graphs.items())}. single: "
        f"Encoder.encode of one text at a time over {args.latency_n} texts of the corpus; "
        "CPU ms per text: the process's CPU time over those calls (work and spin of both "
        f"threads); batch-32: encode of {args.batch_texts} texts in batches of 32; idle CPU: "
        "the process's CPU time over one second of sleep after its runs; beside a busy "
        "neighbour: the single-text runs again while another process runs a Python loop, and "
        "that loop's rate against the same loop alone (1.00 = it lost nothing).",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
