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
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpus import KINDS, build_corpus, write_corpus  # noqa: E402

LOCAL = ("embedrt-fp32", "embedrt-opt", "embedrt-int8", "st-torch")
PEERS = ("st-onnx", "st-onnx-int8", "fastembed")
BASELINE = "st-torch"


def run_candidate(python: str, name: str, args: argparse.Namespace, corpus: Path) -> dict:
    cmd = [python, str(Path(__file__).parent / "worker.py"), name, "--artifact", str(args.artifact),
           "--st-model", str(args.st_model), "--corpus", str(corpus), "--batch-size",
           str(args.batch_size), "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--latency-n", str(args.latency_n), "--spinning", args.spinning]
    env = dict(os.environ, HF_HUB_OFFLINE="1", EMBEDRT_BENCH_T0=repr(time.time()))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        return {"candidate": name, "error": out.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", type=Path, required=True)
    ap.add_argument("--st-model", type=Path, required=True)
    ap.add_argument("--peers-python", default=None)
    ap.add_argument("--texts", type=int, default=3000)
    ap.add_argument("--corpus", choices=KINDS, default="long-tail", help="see bench/corpus.py")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spinning", choices=("on", "off"), default="off")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from embedrt import Encoder

    texts = build_corpus(args.texts, kind=args.corpus)
    corpus = args.out.parent / f".corpus-{os.getpid()}.jsonl"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_corpus(corpus, texts)
    tokens = int(Encoder.load(args.artifact, device="cpu", variant="fp32").count_tokens(texts).sum())
    plan = [(sys.executable, name) for name in LOCAL]
    if args.peers_python:
        plan += [(args.peers_python, name) for name in PEERS]
    try:
        results = {}
        for python, name in plan:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name] = run_candidate(python, name, args, corpus)
    finally:
        corpus.unlink()
    base = results.get(BASELINE, {}).get("texts_per_s")
    for r in results.values():
        if "texts_per_s" in r:
            r["tokens_per_s"] = round(r["texts_per_s"] * tokens / len(texts))
            if base:
                r["speed_vs_st_torch"] = round(r["texts_per_s"] / base, 2)
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "corpus": args.corpus, "texts": len(texts), "tokens": tokens, "batch_size": args.batch_size,
            "threads": args.threads, "spinning": args.spinning, "repeats": args.repeats}
    args.out.with_suffix(".json").write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    lines = [f"{args.corpus} corpus: {len(texts)} texts ({tokens} tokens), batch {args.batch_size}, {args.threads} threads; "
             f"latency over {args.latency_n} texts", "",
             "| candidate | texts/s | tokens/s | vs st-torch | single p50/p95/p99 ms | batch-8 p50/p99 ms "
             "| cold start s | peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error'][0][:80]} |||||||")
            continue
        s, b = r["latency_single_ms"], r["latency_batch8_ms"]
        lines.append(f"| {name} | {r['texts_per_s']} | {r['tokens_per_s']} | {r.get('speed_vs_st_torch', '')}x "
                     f"| {s['p50']}/{s['p95']}/{s['p99']} | {b['p50']}/{b['p99']} | {r['cold_start_s']} "
                     f"| {r['peak_rss_mb']} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
