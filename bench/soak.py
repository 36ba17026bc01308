"""Soak: does resident memory stay flat after warm-up over many texts of mixed lengths?

    python bench/soak.py --artifact artifacts/all-MiniLM-L6-v2 --texts 1000000 \
        --out bench/results/soak

Issue 20's memory target: RSS flat (no growth after warm-up) over 1M texts through `encode`,
the batch job and the server. The texts are drawn per text, seeded, from three pools of
bench/corpus.py's real text (POOLS: 70% short STS-B sentences, 20% Wikipedia paragraphs, 10%
long-tail joins, some past max_seq_length), each pool reshuffled whenever it runs out, so every
stretch of the soak carries every padded width. Each surface runs in its own process, with the
artifact's defaults (precision auto), and its VmRSS is read from /proc:

- encode: a worker process calls Encoder.encode on --chunk texts at a time, reading its own VmRSS
  after each call.
- job: the texts written to a jsonl file, `embedrt embed` on it (its progress log gives the rows
  done), VmRSS sampled every --interval seconds; the .npy must hold every row, all finite.
- serve: `embedrt serve` on 127.0.0.1, --clients threads POSTing /embed requests of 1 to 64 texts
  (seeded sizes); every answer must be a 200 with one vector of dim floats per text.

Per surface: RSS once the first --warmup share of texts is done, the max and final RSS after
it, growth (final - warm-up, and a least-squares slope in MB per 100k texts over the samples after
warm-up), peak (VmHWM), texts/s. "flat": growth and the slope's rise over the post-warm-up span
are both within max(5% of the warm-up RSS, 10 MB) (TOLERANCE_*). Exit 1, writing nothing, when a
surface errs or loses rows; exit 2, after writing, when a surface is not flat.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import build_corpus  # noqa: E402
from machine import describe  # noqa: E402

SURFACES = ("encode", "job", "serve")
# kind: (share of the soak's texts, distinct texts in its pool). Short queries dominate real
# traffic; paragraphs are what jobs carry; the long tail brings the full 256-token batches.
POOLS = {"sentences": (0.7, 15_000), "paragraphs": (0.2, 8_000), "long-tail": (0.1, 20_000)}
DRAW = 4096  # texts drawn per block: the stream is the same whatever the callers' chunk size
MAX_REQUEST = 64  # serve: texts per request, 1..MAX_REQUEST
# Flat: allocators (glibc arenas, ONNX Runtime's) move RSS by a few MB as batch shapes change;
# 10 MB over 900k post-warm-up texts still catches a leak of ~12 bytes per text.
TOLERANCE_SHARE = 0.05
TOLERANCE_MB = 10.0
Sample = tuple[float, int, float, float, float]  # seconds, texts done, VmRSS, RssAnon, VmHWM (MB)


def build_pools(seed: int) -> dict[str, list[str]]:
    """The distinct texts of each kind in POOLS (about 9 MB of text)."""
    return {k: build_corpus(size, seed=seed, kind=k) for k, (_, size) in POOLS.items()}


def soak_texts(n: int, seed: int, pools: dict[str, list[str]]) -> Iterator[str]:
    """n texts mixed from the pools, seeded; each pool is walked in a fresh order every pass."""
    rng = np.random.default_rng(seed)
    kinds = list(POOLS)
    order = {k: rng.permutation(len(p)) for k, p in pools.items()}
    pos = dict.fromkeys(kinds, 0)
    shares = [POOLS[k][0] for k in kinds]
    left = n
    while left:
        for ki in rng.choice(len(kinds), size=min(DRAW, left), p=shares):
            k = kinds[ki]
            if pos[k] == len(order[k]):
                order[k], pos[k] = rng.permutation(len(pools[k])), 0
            yield pools[k][order[k][pos[k]]]
            pos[k] += 1
        left -= min(DRAW, left)


def chunked(texts: Iterator[str], sizes: Iterator[int]) -> Iterator[list[str]]:
    """The texts in consecutive lists of the given sizes (the last one may be shorter)."""
    for size in sizes:
        chunk = [t for _, t in zip(range(size), texts, strict=False)]
        if not chunk:
            return
        yield chunk


def read_status(pid: int | str = "self") -> tuple[float, float, float] | None:
    """VmRSS, RssAnon and VmHWM of a process in MB; None once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    got = dict(re.findall(r"^(VmRSS|RssAnon|VmHWM):\s+(\d+) kB", text, re.MULTILINE))
    if len(got) < 3:  # a zombie: exited, its memory gone
        return None
    rss, anon, hwm = (round(int(got[k]) / 1024, 1) for k in ("VmRSS", "RssAnon", "VmHWM"))
    return rss, anon, hwm


class Sampler(threading.Thread):
    """Reads a process's memory every interval seconds, with the texts done at that moment."""

    def __init__(self, pid: int, done: Callable[[], int], interval: float):
        super().__init__(daemon=True)
        self.pid, self.done, self.interval = pid, done, interval
        self.samples: list[Sample] = []
        self.halt = threading.Event()
        self.start_time = time.perf_counter()

    def run(self) -> None:
        while not self.halt.is_set():
            status = read_status(self.pid)
            if status is None:
                return
            self.samples.append((time.perf_counter() - self.start_time, self.done(), *status))
            self.halt.wait(self.interval)

    def stop(self) -> list[Sample]:
        self.halt.set()
        self.join()
        return self.samples


def worker_encode(args: argparse.Namespace) -> None:
    """The encode surface, in this fresh process: one JSON line of samples on stdout."""
    from embedrt import Encoder

    # The pools come from a small file: building them here (STS-B and the whole Wikipedia
    # file parsed) would leave this process's heap hundreds of MB larger than the model needs.
    pools = json.loads(Path(args.pools).read_text(encoding="utf-8"))
    enc = Encoder.load(args.artifact)
    samples: list[Sample] = []
    done, start = 0, time.perf_counter()
    step = max(args.texts // 10, 1)
    sizes = iter(lambda: args.chunk, None)
    for chunk in chunked(soak_texts(args.texts, args.seed, pools), sizes):
        vecs = enc.encode(chunk)
        if vecs.shape != (len(chunk), enc.dim) or not np.isfinite(vecs).all():
            sys.exit(f"encode: {vecs.shape} for {len(chunk)} texts, or not finite")
        if (done + len(chunk)) // step > done // step:
            print(f"encode: {done + len(chunk):,}/{args.texts:,}", file=sys.stderr, flush=True)
        done += len(chunk)
        samples.append((time.perf_counter() - start, done, *read_status()))  # type: ignore[misc]
    info = {"variant": enc.info.variant, "precision": enc.info.precision}
    print(json.dumps({"samples": samples, "seconds": time.perf_counter() - start, **info}))


def soak_encode(args: argparse.Namespace, pools: dict[str, list[str]], tmp: Path) -> dict:
    (tmp / "pools.json").write_text(json.dumps(pools), encoding="utf-8")
    cmd = [sys.executable, __file__, "--worker", "encode", "--artifact", args.artifact]
    cmd += ["--pools", str(tmp / "pools.json")]
    cmd += ["--texts", str(args.texts), "--chunk", str(args.chunk), "--seed", str(args.seed)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if out.returncode:
        sys.exit(f"encode: the worker exited {out.returncode}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["samples"][-1][1] != args.texts:
        sys.exit(f"encode: {result['samples'][-1][1]} texts embedded of {args.texts}")
    return result


def soak_job(args: argparse.Namespace, pools: dict[str, list[str]], tmp: Path) -> dict:
    src, dest = tmp / "soak.jsonl", tmp / "soak.npy"
    with open(src, "w", encoding="utf-8") as f:
        for t in soak_texts(args.texts, args.seed, pools):
            f.write(json.dumps({"text": t}) + "\n")
    cmd = [sys.executable, "-m", "embedrt.cli", "embed", str(src), "-m", args.artifact]
    cmd += ["-o", str(dest), "--progress", "log", "--log-every", str(args.interval)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows, other = [0], []  # rows done, from the progress log; the job's other lines

    def read_log() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            if m := re.match(r"embed: ([\d,]+)/", line):
                rows[0] = int(m.group(1).replace(",", ""))
            else:
                other.append(line.rstrip())

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    sampler = Sampler(proc.pid, lambda: rows[0], args.interval)
    sampler.start()
    code = proc.wait()
    seconds = time.perf_counter() - start
    samples = sampler.stop()
    reader.join()
    if code:
        sys.exit(f"job: `embedrt embed` exited {code}: " + "\n".join(other[-20:]))
    vecs = np.load(dest, mmap_mode="r")
    if vecs.shape[0] != args.texts:
        sys.exit(f"job: {vecs.shape[0]} rows in {dest}, expected {args.texts}")
    for i in range(0, len(vecs), 65536):
        part = np.asarray(vecs[i : i + 65536])
        if not np.isfinite(part).all() or (np.linalg.norm(part, axis=1) == 0).any():
            sys.exit(f"job: rows {i}..{i + len(part)} hold a non-finite or zero vector")
    return {"samples": samples, "seconds": seconds, "summary": other[-1] if other else ""}


def soak_serve(args: argparse.Namespace, pools: dict[str, list[str]], tmp: Path) -> dict:
    import httpx
    from fixtures.server_process import ServerProcess

    from embedrt.manifest import load_manifest

    dim = load_manifest(args.artifact).dim
    srv = ServerProcess(Path(args.artifact), tmp)
    info = httpx.get(srv.url + "/info", timeout=10).json()
    answered, errors = [0], []
    lock = threading.Lock()
    requests: queue.Queue[list[str] | None] = queue.Queue(maxsize=4 * args.clients)

    def client() -> None:
        with httpx.Client(base_url=srv.url, timeout=300) as http:
            while (texts := requests.get()) is not None:
                if errors:
                    continue  # drain: the producer must not block on a full queue
                try:
                    r = http.post("/embed", json={"inputs": texts})
                    vecs = r.json() if r.status_code == 200 else None
                except Exception as e:  # any failure ends the soak, named, never a hung thread
                    errors.append(f"{type(e).__name__}: {e}")
                    continue
                if vecs is None or len(vecs) != len(texts) or any(len(v) != dim for v in vecs):
                    errors.append(f"{len(texts)} texts: status {r.status_code}, {r.text[:200]}")
                    continue
                with lock:
                    answered[0] += len(texts)

    sampler = Sampler(srv.proc.pid, lambda: answered[0], args.interval)
    clients = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    try:
        sampler.start()
        start = time.perf_counter()
        for c in clients:
            c.start()
        rng = np.random.default_rng(args.seed + 1)
        sizes = iter(lambda: int(rng.integers(1, MAX_REQUEST + 1)), None)
        for texts in chunked(soak_texts(args.texts, args.seed, pools), sizes):
            requests.put(texts)
            if errors:
                break
        for _ in clients:
            requests.put(None)
        for c in clients:
            c.join()
        seconds = time.perf_counter() - start
        time.sleep(args.interval)  # one more sample with every answer in
        samples = sampler.stop()
    finally:
        code = srv.stop()
    if errors or answered[0] != args.texts or code:
        sys.exit(
            f"serve: {answered[0]} texts answered of {args.texts}, {len(errors)} failed requests"
            f"{f' (first: {errors[0]})' if errors else ''}, server exit {code}; its log ends:\n"
            + srv.log()[-2000:]
        )
    return {"samples": samples, "seconds": seconds, "precision": info.get("precision")}


def summarize(name: str, samples: list[Sample], texts: int, warmup: float, seconds: float) -> dict:
    """The figures of one surface from its samples (see the module docstring)."""
    post = [s for s in samples if s[1] >= warmup * texts]
    if len(post) < 2:
        sys.exit(f"{name}: {len(post)} samples after warm-up; soak more texts or sample faster")
    n, rss = np.array([s[1] for s in post], float), np.array([s[2] for s in post])
    slope = float(np.polyfit(n, rss, 1)[0]) if n[-1] > n[0] else 0.0  # MB per text
    base, final = float(rss[0]), float(rss[-1])
    tolerance = max(TOLERANCE_SHARE * base, TOLERANCE_MB)
    growth, rise = final - base, slope * (n[-1] - n[0])
    return {
        "texts_per_s": round(texts / seconds, 1),
        "seconds": round(seconds, 1),
        "rss_after_warmup_mb": base,
        "max_rss_after_warmup_mb": float(rss.max()),
        "final_rss_mb": final,
        "growth_mb": round(growth, 1),
        "slope_mb_per_100k": round(slope * 1e5, 2),
        "slope_rise_mb": round(rise, 1),
        "anon_after_warmup_mb": post[0][3],
        "final_anon_mb": post[-1][3],
        "peak_mb": max(s[4] for s in samples),
        "tolerance_mb": round(tolerance, 1),
        "verdict": "flat" if growth <= tolerance and rise <= tolerance else "grows",
        "samples_after_warmup": len(post),
    }


def thin(samples: list[Sample], most: int = 200) -> list[Sample]:
    """At most `most` (+1) samples, evenly spaced, the last one kept, seconds rounded (for the
    JSON)."""
    step = max(-(-len(samples) // most), 1)
    kept = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    return [(round(t, 2), *rest) for t, *rest in kept]


def write_results(args: argparse.Namespace, results: dict, machine: str) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python bench/soak.py", *sys.argv[1:]])
    doc = {
        "machine": machine,
        "command": command,
        "artifact": args.artifact,
        "texts": args.texts,
        "pools": {k: {"share": s, "distinct": d} for k, (s, d) in POOLS.items()},
        "warmup_share": args.warmup,
        "tolerance": {"share_of_warmup_rss": TOLERANCE_SHARE, "least_mb": TOLERANCE_MB},
        "surfaces": results,
    }
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    mix = ", ".join(f"{share:.0%} {kind}" for kind, (share, _) in POOLS.items())
    lines = [
        f"Soak of {args.texts:,} texts of mixed lengths ({mix}), {Path(args.artifact).name}, "
        f"precision auto; CPU ({machine})",
        "",
        "| surface | texts/s | RSS after warm-up MB | max after warm-up | final | growth MB "
        "| slope MB/100k texts | peak (VmHWM) MB | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['texts_per_s']:.0f} | {r['rss_after_warmup_mb']:.0f} | "
            f"{r['max_rss_after_warmup_mb']:.0f} | {r['final_rss_mb']:.0f} | "
            f"{r['growth_mb']:+.1f} | {r['slope_mb_per_100k']:+.2f} | {r['peak_mb']:.0f} | "
            f"{r['verdict']} (tolerance {r['tolerance_mb']:.0f} MB) |"
        )
    lines += [
        "",
        f"`{command}`",
        "",
        f"Warm-up is the first {args.warmup:.0%} of the texts. Growth is the final RSS minus the "
        "RSS after warm-up; the slope is a least-squares fit of VmRSS against texts done over "
        "the samples after warm-up. Flat: both the growth and the slope's rise over that span "
        f"are within max({TOLERANCE_SHARE:.0%} of the RSS after warm-up, {TOLERANCE_MB:.0f} MB): "
        "allocators move RSS by a few MB as batch shapes change, while a leak of a dozen bytes "
        "per text over 900k texts would exceed it. encode: one sample per call of "
        f"{args.chunk} texts; job and serve: VmRSS every {args.interval} s (the job's texts "
        "from its progress log; its time includes loading, scan and assembly). serve: "
        f"{args.clients} client threads, /embed requests of 1-{MAX_REQUEST} texts.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--artifact", default=str(ROOT / "artifacts/all-MiniLM-L6-v2"))
    ap.add_argument("--texts", type=int, default=1_000_000, help="texts per surface")
    ap.add_argument("--surfaces", default=",".join(SURFACES), help="comma-separated, in order")
    ap.add_argument("--out", default="bench/results/soak", help="writes OUT.json and OUT.md")
    ap.add_argument("--warmup", type=float, default=0.1, help="share of texts that is warm-up")
    ap.add_argument("--chunk", type=int, default=1024, help="encode: texts per encode call")
    ap.add_argument("--clients", type=int, default=4, help="serve: concurrent client threads")
    ap.add_argument("--interval", type=float, default=0.5, help="job, serve: s between samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", choices=("encode",), help=argparse.SUPPRESS)
    ap.add_argument("--pools", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_encode(args)
    surfaces = args.surfaces.split(",")
    if unknown := set(surfaces) - set(SURFACES):
        sys.exit(f"--surfaces: unknown {sorted(unknown)}; choose from {', '.join(SURFACES)}")

    run = {"encode": soak_encode, "job": soak_job, "serve": soak_serve}
    load_before = os.getloadavg()[0]
    results, pools = {}, build_pools(args.seed)
    for name in surfaces:
        print(f"{name}: {args.texts:,} texts ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"soak_{name}_") as tmp:
            raw = run[name](args, pools, Path(tmp))
        results[name] = summarize(name, raw["samples"], args.texts, args.warmup, raw["seconds"])
        results[name].update({k: v for k, v in raw.items() if k not in ("samples", "seconds")})
        results[name]["samples"] = thin(raw["samples"])
        print(json.dumps({k: v for k, v in results[name].items() if k != "samples"}), flush=True)
    machine = f"{describe()}, 1-min load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    write_results(args, results, machine)
    if grew := [n for n, r in results.items() if r["verdict"] != "flat"]:
        print(f"RSS grew after warm-up on: {', '.join(grew)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
