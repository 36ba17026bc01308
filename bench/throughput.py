"""The headline benchmark: embedrt variants against what users would otherwise run, same corpus,
same machine, same batch size and threads, one fresh process per candidate, in one run.

    python bench/throughput.py --artifact artifacts/all-MiniLM-L6-v2 --st-model DIR \
        --peers-python .venv-peers/bin/python --out bench/results/throughput

Candidates: embedrt fp32 / opt / int8 (this venv), sentence-transformers with torch (this venv),
sentence-transformers ONNX backend fp32 and int8 and fastembed (the peers' venv, see
bench/peers.py), when --peers-python is given. Figures: texts/s and tokens/s on the long-tail
corpus or on short sentences (--corpus, bench/corpus.py), single-text and batch-of-8 latency p50/p95/p99, cold start (process
start to first embedding), peak RSS; ratios against sentence-transformers with torch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import KINDS, build_corpus, write_corpus  # noqa: E402
from machine import describe  # noqa: E402

from embedrt.session import SPINNING, SessionOptions  # noqa: E402

LOCAL = ("embedrt-fp32", "embedrt-opt", "embedrt-int8", "st-torch")
PEERS = ("st-onnx", "st-onnx-int8", "fastembed")
BASELINE = "st-torch"


def worker_command(
    python: str, name: str, args: argparse.Namespace, corpus: Path
) -> tuple[list[str], dict[str, str]]:
    """bench/worker.py's command line and environment for one candidate."""
    cmd = [
        python,
        str(Path(__file__).parent / "worker.py"),
        name,
        "--artifact",
        str(args.artifact),
        "--st-model",
        str(args.st_model),
        "--corpus",
        str(corpus),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--repeats",
        "1",
        "--latency-n",
        str(args.latency_n),
        "--spinning",
        args.spinning,
    ]
    return cmd, dict(os.environ, HF_HUB_OFFLINE="1", EMBEDRT_BENCH_T0=repr(time.time()))


def runnable(candidates: str, artifact: Path) -> list[str]:
    """The comma-separated candidates less the embedrt variants the artifact lacks (MPNet has
    no opt: ONNX Runtime fuses none of its attention)."""
    from embedrt import load_manifest

    have = {v.name for v in load_manifest(artifact).variants}
    return [
        name
        for name in candidates.split(",")
        if not name.startswith("embedrt-") or name.removeprefix("embedrt-").split("@")[0] in have
    ]


def write_json(out: Path, meta: dict, results: dict) -> None:
    """OUT.json: what was run, and the results."""
    out.with_suffix(".json").write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")


def run_candidate(python: str, name: str, args: argparse.Namespace, corpus: Path) -> dict:
    cmd, env = worker_command(python, name, args, corpus)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        return {"candidate": name, "error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_result(runs: list[dict]) -> dict:
    """Per figure, the median over a candidate's rounds (peak RSS: the largest); an error in any
    round is the candidate's result."""
    failed = [r for r in runs if "error" in r]
    if failed:
        return failed[0]
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [r[key] for r in runs]
            out[key] = max(values) if key == "peak_rss_mb" else round(float(np.median(values)), 3)
        elif isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
            out[key] = {k: round(float(np.median([r[key][k] for r in runs])), 2) for k in value}
    out["rounds"] = len(runs)
    out["texts_per_s_rounds"] = [r.get("texts_per_s") for r in runs]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", type=Path, required=True)
    ap.add_argument("--st-model", type=Path, required=True)
    ap.add_argument("--peers-python", default=None)
    ap.add_argument("--texts", type=int, default=3000)
    ap.add_argument("--corpus", choices=KINDS, default="long-tail", help="see bench/corpus.py")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--spinning",
        choices=SPINNING,
        default=SessionOptions.spinning,
        help="embedrt's and st-onnx's sessions",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds; each runs every candidate once, in turn, in a fresh process",
    )
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument(
        "--candidates",
        default=",".join(LOCAL),
        help="comma-separated worker.py candidates to run (default: %(default)s)",
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from embedrt import Encoder

    texts = build_corpus(args.texts, kind=args.corpus)
    corpus = args.out.parent / f".corpus-{os.getpid()}.jsonl"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_corpus(corpus, texts)
    tokens = int(
        Encoder.load(args.artifact, device="cpu", variant="fp32").count_tokens(texts).sum()
    )
    plan = [(sys.executable, name) for name in runnable(args.candidates, args.artifact)]
    if args.peers_python:
        plan += [(args.peers_python, name) for name in PEERS]
    # Candidates take turns, round after round, so that a neighbour's burst of load on a shared
    # machine hits all of them alike instead of a few; each figure is the median over rounds.
    runs: dict[str, list[dict]] = {name: [] for _, name in plan}
    try:
        for r in range(args.rounds):
            for python, name in plan:
                print(f"round {r + 1}/{args.rounds}: {name} ...", file=sys.stderr, flush=True)
                runs[name].append(run_candidate(python, name, args, corpus))
    finally:
        corpus.unlink()
    results = {name: median_result(rs) for name, rs in runs.items()}
    base = results.get(BASELINE, {}).get("texts_per_s")
    for r in results.values():
        if "texts_per_s" in r:
            r["tokens_per_s"] = round(r["texts_per_s"] * tokens / len(texts))
            if base:
                r["speed_vs_st_torch"] = round(r["texts_per_s"] / base, 2)
    meta = {
        "machine": describe(),
        "corpus": args.corpus,
        "texts": len(texts),
        "tokens": tokens,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "spinning": args.spinning,
        "rounds": args.rounds,
        "command": "python " + " ".join(sys.argv),
    }
    write_json(args.out, meta, results)
    lines = [
        f"{args.corpus} corpus: {len(texts)} texts ({tokens} tokens), batch {args.batch_size}, {args.threads} threads, "
        f"spinning {args.spinning}; latency over {args.latency_n} texts; medians of {args.rounds} interleaved "
        f"rounds, each candidate a fresh process per round; {meta['machine']}",
        "",
        f"Command: `{meta['command']}`",
        "",
        "| candidate | texts/s | tokens/s | vs st-torch | single p50/p95/p99 ms | batch-8 p50/p99 ms "
        "| cold start s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error'][0][:80]} |||||||")
            continue
        s, b = r["latency_single_ms"], r["latency_batch8_ms"]
        lines.append(
            f"| {name} | {r['texts_per_s']} | {r['tokens_per_s']} | {r.get('speed_vs_st_torch', '')}x "
            f"| {s['p50']}/{s['p95']}/{s['p99']} | {b['p50']}/{b['p99']} | {r['cold_start_s']} "
            f"| {r['peak_rss_mb']} |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
