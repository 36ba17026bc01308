"""One benchmark candidate in its own fresh process: cold start, throughput, latency, peak RSS.

    EMBEDRT_BENCH_T0=<time.time() before spawn> python bench/worker.py CANDIDATE \
        --artifact DIR --st-model DIR --corpus FILE --batch-size 32 --threads 2

Prints one JSON line. With --paired it instead encodes one text per line of stdin, replying
with the seconds it took, until stdin ends (bench/latency.py drives it). Candidates are
functions returning encode(texts, batch_size) -> ndarray; the peers that need their own venv
(sentence-transformers ONNX backend, fastembed) live in bench/peers.py and run under that
venv's python.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import read_corpus  # noqa: E402
from memory import peak_rss_mb  # noqa: E402

# embedrt.session.SPINNING, written out: this runs in the peers' venv too, without embedrt.
SPINNING = ("off", "run", "on")

EncodeFn = Callable[[list[str], int], np.ndarray]


# ONNX Runtime memory settings to measure against embedrt's own (issue 20): a candidate named
# "embedrt-VARIANT@A+B" loads with the session options changed by SETTINGS[A] and SETTINGS[B].
SETTINGS: dict[str, Callable[[object], None]] = {
    "arena": lambda so: setattr(so, "enable_cpu_mem_arena", True),
    "no-arena": lambda so: setattr(so, "enable_cpu_mem_arena", False),
    "no-pattern": lambda so: setattr(so, "enable_mem_pattern", False),
    "pattern": lambda so: setattr(so, "enable_mem_pattern", True),
    "own-arena": lambda so: so.add_session_config_entry("session.use_env_allocators", "0"),
}


STREAMS: dict[str, int] = {}  # "N-streams": Encoder.load(streams=N), set by _with_settings


def _with_settings(settings: str) -> None:
    """Make every session embedrt creates in this process use SETTINGS[name] for each name in
    settings ("+"-joined). "no-cells": plan batches by tokens and rows alone, without the
    attention-area bound (BatchPlan.max_cells); "cells-N": that bound at N. "1-stream", "2-streams": Encoder.load(streams=N),
    whatever embedrt's default for the graph (1: no streams' session, one copy of the weights)."""
    import embedrt.session as session

    names = settings.split("+")
    for name in [n for n in names if n.endswith(("-stream", "-streams"))]:
        STREAMS["streams"] = int(name.split("-")[0])  # "1-stream", "2-streams"
        names.remove(name)
    for name in [n for n in names if n == "no-cells" or n.startswith("cells-")]:
        import functools

        import embedrt.loading as loading

        cells = None if name == "no-cells" else int(name.split("-")[1])
        loading.BatchPlan = functools.partial(loading.BatchPlan, max_cells=cells)  # type: ignore[misc]
        names.remove(name)
    changes = [SETTINGS[name] for name in names]
    made = session.ort_session_options

    def patched(options, device):  # type: ignore[no-untyped-def]
        so, extra = made(options, device)
        for change in changes:
            change(so)
        return so, extra

    session.ort_session_options = patched


def embedrt_candidate(variant: str) -> Callable[[argparse.Namespace], EncodeFn]:
    def load(args: argparse.Namespace) -> EncodeFn:
        from embedrt import Encoder

        enc = Encoder.load(
            args.artifact,
            device=args.device,
            variant=variant,
            threads=args.threads,
            spinning=args.spinning,
            **STREAMS,
        )
        return lambda texts, bs: enc.encode(texts, batch_size=bs)

    return load


def st_torch(args: argparse.Namespace) -> EncodeFn:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.st_model, device="cpu" if args.device == "cpu" else "cuda")
    return lambda texts, bs: model.encode(texts, batch_size=bs, convert_to_numpy=True)


def floor_graph(form: str) -> Callable[[argparse.Namespace], EncodeFn]:
    """bench/kernel_floor.py's candidate of `form`, imported when used (onnx is not in the
    peers' venv)."""

    def load(args: argparse.Namespace) -> EncodeFn:
        from kernel_floor import floor_candidate

        return floor_candidate(form)(args)

    return load


CANDIDATES: dict[str, Callable[[argparse.Namespace], EncodeFn]] = {
    "embedrt-fp32": embedrt_candidate("fp32"),
    "embedrt-opt": embedrt_candidate("opt"),
    "embedrt-int8": embedrt_candidate("int8"),
    "embedrt-fp16": embedrt_candidate("fp16"),
    "st-torch": st_torch,
    **{f"floor-{form}": floor_graph(form) for form in ("fp32", "fp32-qkv", "int8")},
}


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {f"p{p}": round(float(np.percentile(ms, p)), 2) for p in (50, 95, 99)}


def paired(encode: EncodeFn, warm: list[str]) -> None:
    """Encode the text on each stdin line (a JSON string) alone; reply with the seconds taken."""
    for text in warm:
        encode([text], 1)
    print("ready", flush=True)
    for line in sys.stdin:
        text = json.loads(line)
        start = time.perf_counter()
        encode([text], 1)
        print(time.perf_counter() - start, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("candidate")
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--st-model", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spinning", choices=SPINNING, default="run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--paired", action="store_true", help="one text per stdin line (latency.py)")
    args = ap.parse_args()
    t0 = float(os.environ.get("EMBEDRT_BENCH_T0", time.time()))

    name, _, settings = args.candidate.partition("@")
    if settings:
        _with_settings(settings)
    if name in CANDIDATES:
        load = CANDIDATES[name]
    else:
        from peers import PEERS  # only importable in the peers' venv

        load = PEERS[args.candidate]
    encode = load(args)
    encode(["hello world"], 1)
    cold_start = time.time() - t0

    texts = read_corpus(Path(args.corpus))
    encode(texts[:64], args.batch_size)  # warm-up: allocators, thread pools, kernels
    if args.paired:
        paired(encode, texts[:16])
        return
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        encode(texts, args.batch_size)
        runs.append(time.perf_counter() - t)
    seconds = float(np.median(runs))

    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.permutation(len(texts))[: args.latency_n]]
    single, small = [], []
    for t in sample:
        s = time.perf_counter()
        encode([t], 1)
        single.append(time.perf_counter() - s)
    for i in range(0, len(sample), 8):
        s = time.perf_counter()
        encode(sample[i : i + 8], 8)
        small.append(time.perf_counter() - s)

    print(
        json.dumps(
            {
                "candidate": args.candidate,
                "texts": len(texts),
                "seconds": round(seconds, 3),
                "texts_per_s": round(len(texts) / seconds, 1),
                "cold_start_s": round(cold_start, 3),
                "latency_single_ms": percentiles(single),
                "latency_batch8_ms": percentiles(small),
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


if __name__ == "__main__":
    main()
