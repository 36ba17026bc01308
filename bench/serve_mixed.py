"""Small requests next to maximum-size ones: what one big client costs everyone else.

    python bench/serve_mixed.py --artifact artifacts/all-MiniLM-L6-v2 --seconds 40 --rounds 2 \
        --out bench/results/serve_mixed

One `embedrt serve` at a time on 127.0.0.1, fair rounds (the default) against --fifo (strict
arrival order, as text-embeddings-inference takes them), alternating rounds. In each run, one
client sends maximum-size requests back to back (--big-inputs texts of about max_seq_length
tokens each: as much as one request may carry) while --small-clients clients each send one
short sentence at a time. Reported: the small requests' latency p50/p99/max and count, the big
requests' count and latency, tokens/s of the whole server, and every answer's status (all 200).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import build_corpus  # noqa: E402
from fixtures.server_process import ServerProcess  # noqa: E402

POLICIES = {"fair": [], "fifo": ["--fifo"]}


def big_texts(sentences: list[str], inputs: int) -> list[str]:
    """inputs texts of ~250 words each (past 256 tokens: each is a full-length row; 2048 of
    them stay under the 4 MiB body limit)."""
    out, k = [], 0
    for _ in range(inputs):
        words: list[str] = []
        while len(words) < 250:
            words += sentences[k % len(sentences)].split()
            k += 1
        out.append(" ".join(words))
    return out


def run_once(
    artifact: str, policy: str, small: list[str], big: list[str], clients: int, seconds: float
) -> dict:
    logdir = Path(tempfile.mkdtemp(prefix=f"serve_mixed_{policy}_"))
    srv = ServerProcess(Path(artifact), logdir, *POLICIES[policy])
    small_lat: list[float] = []
    big_lat: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def small_client(c: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=300) as http:
            i = c
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = http.post("/embed", json={"inputs": small[i % len(small)]})
                with lock:
                    small_lat.append(time.perf_counter() - t)
                    statuses.append(r.status_code)
                i += clients

    def big_client() -> None:
        with httpx.Client(base_url=srv.url, timeout=600) as http:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                r = http.post("/v1/embeddings", json={"input": big, "encoding_format": "base64"})
                with lock:
                    big_lat.append(time.perf_counter() - t)
                    statuses.append(r.status_code)

    try:
        start = time.perf_counter()
        threads = [threading.Thread(target=big_client)]
        threads[0].start()
        time.sleep(0.5)  # the big request is in: every small one arrives behind some of it
        threads += [threading.Thread(target=small_client, args=(c,)) for c in range(clients)]
        for t in threads[1:]:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        metrics = srv.metrics()
    finally:
        srv.stop()
    tokens = sum(
        v
        for (name, labels), v in metrics.items()
        if name == "embedrt_tokens_total" and ("kind", "real") in labels
    )
    ms = np.array(small_lat) * 1000
    return {
        "policy": policy,
        "small_requests": len(small_lat),
        "small_p50_ms": round(float(np.percentile(ms, 50)), 1),
        "small_p99_ms": round(float(np.percentile(ms, 99)), 1),
        "small_max_ms": round(float(ms.max()), 1),
        "big_requests": len(big_lat),
        "big_mean_s": round(float(np.mean(big_lat)), 2),
        "tokens_per_s": round(tokens / wall, 1),
        "statuses": sorted(set(statuses)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--seconds", type=float, default=40.0, help="per run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating fair / fifo rounds")
    ap.add_argument("--small-clients", type=int, default=8)
    ap.add_argument("--big-inputs", type=int, default=2048, help="texts per big request")
    ap.add_argument("--out", required=True, help="path prefix: writes .json and .md")
    args = ap.parse_args()

    sentences = build_corpus(4000, kind="sentences")
    small, big = sentences[:2000], big_texts(sentences[2000:], args.big_inputs)
    runs = []
    for r in range(args.rounds):
        for policy in ("fair", "fifo") if r % 2 == 0 else ("fifo", "fair"):
            print(f"round {r + 1}/{args.rounds}: {policy} ...", flush=True)
            runs.append(
                run_once(args.artifact, policy, small, big, args.small_clients, args.seconds)
            )
            print(json.dumps(runs[-1]), flush=True)
    best = {p: [x for x in runs if x["policy"] == p] for p in POLICIES}
    median = {
        p: {
            k: float(np.median([x[k] for x in rs]))
            for k in ("small_p50_ms", "small_p99_ms", "small_max_ms", "tokens_per_s")
        }
        for p, rs in best.items()
    }
    doc = {
        "machine": {
            "cpus": len(__import__("os").sched_getaffinity(0)),
            "python": platform.python_version(),
        },
        "setup": {
            "seconds": args.seconds,
            "small_clients": args.small_clients,
            "big_inputs": args.big_inputs,
            "big_clients": 1,
            "artifact": args.artifact,
        },
        "runs": runs,
        "median": median,
        "fair_vs_fifo_small_p99": round(
            median["fair"]["small_p99_ms"] / median["fifo"]["small_p99_ms"], 3
        ),
    }
    Path(args.out + ".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"mixed load: 1 client sending requests of {args.big_inputs} full-length texts back to "
        f"back, {args.small_clients} clients sending one STS-B sentence at a time; {args.seconds:g} s "
        f"per run, {args.rounds} alternating rounds, medians; `embedrt serve` defaults otherwise",
        "",
        "| rounds | small p50 ms | small p99 ms | small max ms | server tokens/s |",
        "|---|---|---|---|---|",
    ]
    for p in POLICIES:
        m = median[p]
        lines.append(
            f"| {p} | {m['small_p50_ms']:.1f} | {m['small_p99_ms']:.1f} | "
            f"{m['small_max_ms']:.1f} | {m['tokens_per_s']:.0f} |"
        )
    lines += [
        "",
        f"small requests' p99, fair / fifo: {doc['fair_vs_fifo_small_p99']}x",
        "",
        "every run: "
        + "; ".join(
            f"{x['policy']}: {x['small_requests']} small, "
            f"{x['big_requests']} big (mean {x['big_mean_s']} s), "
            f"statuses {x['statuses']}"
            for x in runs
        ),
    ]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
