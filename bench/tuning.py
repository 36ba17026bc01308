"""Defaults by measurement: threads, streams, spinning and the batch token budget of
Encoder.encode.

    python bench/tuning.py --artifact artifacts/all-MiniLM-L6-v2 --variant int8 \
        --corpus sentences --out bench/results/tuning

One process; every configuration runs the same corpus (bench/corpus.py) at batch 32,
configurations interleaved over --rounds and the median round kept, so a noisy neighbour hits
all alike. Stage 1: threads x streams x spinning; stage 2: the batch budget at stage 1's best.
Also reports the tokenizer's share of an encode (the part that overlapping could hide).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from corpus import KINDS, build_corpus  # noqa: E402

from embedrt import Encoder, EncodeStats  # noqa: E402
from embedrt.session import SPINNING  # noqa: E402


def _sweep(
    args: argparse.Namespace, texts: list[str], configs: list[tuple[dict, int]]
) -> list[dict]:
    """Median texts/s of each (Encoder.load options, batch_size) over interleaved rounds."""
    encoders = [
        Encoder.load(args.artifact, device="cpu", variant=args.variant, **c) for c, _ in configs
    ]
    speeds: list[list[float]] = [[] for _ in configs]
    efficiency = [1.0] * len(configs)
    for enc in encoders:
        enc.runner.start()
    for _ in range(args.rounds):
        for i, (enc, (_, batch_size)) in enumerate(zip(encoders, configs, strict=True)):
            enc.encode(texts[:32])
            stats = EncodeStats()
            t = time.perf_counter()
            enc.encode(texts, batch_size=batch_size, stats=stats)
            speeds[i].append(len(texts) / (time.perf_counter() - t))
            efficiency[i] = stats.padding_efficiency
    return [
        {
            **c,
            "batch_size": bs,
            "texts_per_s": round(statistics.median(v), 1),
            "padding_efficiency": round(e, 3),
        }
        for (c, bs), v, e in zip(configs, speeds, efficiency, strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--artifact", type=Path, required=True)
    ap.add_argument("--variant", default="int8", help="int8: what precision auto takes on a CPU")
    ap.add_argument("--corpus", choices=KINDS, default="sentences")
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    texts = build_corpus(args.texts, kind=args.corpus)

    # Stage 1: threads x spinning at the default plan. Stage 2: the plan at the best of stage 1.
    stage1 = [
        {"threads": t, "streams": n, "spinning": s}
        for t in (1, 2)
        for n in (1, 2)
        if n <= t
        for s in SPINNING
    ]
    best1 = _sweep(args, texts, [({**c}, 32) for c in stage1])
    winner = max(best1, key=lambda r: r["texts_per_s"])
    chosen = {k: winner[k] for k in ("threads", "streams", "spinning")}
    stage2 = [
        ({**chosen, "batch_tokens": bt}, bs)
        for bt in (2048, 4096, 8192, 16384)
        for bs in (16, 32, 64, 128)
    ]
    rows = best1 + _sweep(args, texts, stage2)
    enc = Encoder.load(args.artifact, device="cpu", variant=args.variant)
    t = time.perf_counter()
    enc.tokenize(texts)
    tokenize_s = time.perf_counter() - t
    top = max(r["texts_per_s"] for r in rows)
    for r in rows:
        r["vs_best"] = round(r["texts_per_s"] / top, 3)
    result = {
        "variant": args.variant,
        "corpus": args.corpus,
        "texts": len(texts),
        "rounds": args.rounds,
        "tokenize_s": round(tokenize_s, 3),
        "tokenize_share_of_best_encode": round(tokenize_s / (len(texts) / top), 3),
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"variant {args.variant}, {args.corpus} corpus, {len(texts)} texts, median of "
        f"{args.rounds} interleaved rounds; tokenizing them takes "
        f"{result['tokenize_share_of_best_encode']:.1%} of the best encode",
        "",
        "| threads | streams | spinning | batch_tokens | batch_size | texts/s | vs best | padding efficiency |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['threads']} | {r['streams']} | {r['spinning']} | {r.get('batch_tokens', 16384)} | {r['batch_size']} | "
        f"{r['texts_per_s']} | {r['vs_best']} | {r['padding_efficiency']} |"
        for r in rows
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
