"""embedrt serve beside the server a user would otherwise run, infinity-emb, on the same model,
machine and load: texts/s, latency p50/p99, peak RSS, cold start, and cosine to
sentence-transformers.

    python bench/serve_peers.py --setup           # .venv-infinity and infinity's ONNX files
    python bench/serve_peers.py --rounds 3        # writes results/serve_peers.{json,md}
    python bench/serve_peers.py --rounds 1 --texts 64 --servers "infinity optimum" --out /tmp/x

One server at a time, in alternating rounds (a fresh process per server and round), each
loaded with two patterns of STS-B dev sentences: 64 clients sending 1 text per request, and 8
clients sending 32 texts per request, both through the OpenAI-style route (base64 answers).
Cold start: process start to the first embedding answered. Peak RSS: the server process's
VmHWM. Cosine: every answered vector against SentenceTransformer.encode (torch, fp32) of the
same text. infinity-emb runs from its own venv (INFINITY_VENV), since it needs numpy < 2 and
sentence-transformers < 4; `--setup` builds it with the pins below, then has
bench/infinity_onnx.py make the ONNX folders its optimum engine serves (fp32 and int8, under
.bench-cache/infinity; that file says what infinity looks for and why the server runs in the
model folder with --model-id "."). The optimum engine runs with --pooling-method mean: its
default pools by CLS.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from http_load import ROUTES, arun, load  # noqa: E402
from infinity_onnx import FILES as INFINITY_ONNX_FILES  # noqa: E402
from infinity_onnx import server_env  # noqa: E402
from machine import describe  # noqa: E402
from serve_load import sentences  # noqa: E402

INFINITY_VENV = ROOT / ".venv-infinity"
# Resolved with pip on Python 3.11 (2026-11-28) next to the local CPU torch; infinity-emb
# 0.0.78 wants numpy < 2 and sentence-transformers < 4, so it cannot share .venv-peers.
INFINITY_PINS = [
    "torch==2.13.0",
    "infinity-emb[server,torch,optimum]==0.0.78",
    "numpy==1.26.4",
    "sentence-transformers==3.4.1",
    "transformers==4.57.6",
    "optimum==2.1.0",
    "onnxruntime==1.32.0",
    "fastapi==0.165.0",
    "uvicorn==0.32.1",
]
ARTIFACT = ROOT / "artifacts" / "all-MiniLM-L6-v2"
PATTERNS = {"64x1": (64, 1), "8x32": (8, 32)}
ROUTES["infinity"] = ("/embeddings", lambda t: {"input": t, "encoding_format": "base64"})


def model_dir() -> str:
    from embedrt.export.source import resolve_source

    return str(resolve_source("all-MiniLM-L6-v2")[1])


def infinity_onnx_dir() -> Path:
    """Where --setup puts infinity's ONNX folders: keyed by the weights' sha256, as bench/peers.py
    keys its copies, so a changed model is never served from a stale export."""
    import hashlib

    src = Path(model_dir())
    digest = hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    base = os.environ.get("EMBEDRT_BENCH_CACHE")
    return (
        (Path(base) if base else ROOT / ".bench-cache") / "infinity" / f"{src.name}-{digest[:12]}"
    )


# What a user would run: embedrt's defaults at each precision, and infinity-emb's engines.
DEFAULT_SERVERS = (
    "embedrt int8",
    "embedrt fp32",
    "infinity torch",
    "infinity optimum",
    "infinity optimum int8",
)


@dataclass(frozen=True)
class Server:
    cmd: list[str]
    cwd: Path | None = None  # infinity optimum: its model folder (bench/infinity_onnx.py: why)
    env: dict[str, str] = field(default_factory=dict)


def servers(port: int, onnx_dir: Path) -> dict[str, Server]:
    py = [sys.executable, "-m", "embedrt.cli", "serve", "-m", str(ARTIFACT), "--port", str(port)]
    inf = [str(INFINITY_VENV / "bin" / "infinity_emb"), "v2", "--device", "cpu"]
    inf += ["--port", str(port)]
    torch = [*inf, "--model-id", model_dir(), "--engine", "torch"]
    optimum = [*inf, "--model-id", ".", "--engine", "optimum", "--pooling-method", "mean"]
    out = {
        "embedrt int8": Server([*py, "--precision", "int8"]),
        "embedrt fp32": Server([*py, "--precision", "fp32"]),
        # run only when named in --servers (not in DEFAULT_SERVERS): embedrt with and without
        # streams (--streams 1 / 2), and with ONNX Runtime's threads never spinning
        "embedrt int8 spinning off": Server([*py, "--precision", "int8", "--spinning", "off"]),
        "embedrt fp32 spinning off": Server([*py, "--precision", "fp32", "--spinning", "off"]),
        "embedrt fp32 1 stream": Server([*py, "--precision", "fp32", "--streams", "1"]),
        "embedrt fp32 2 streams": Server([*py, "--precision", "fp32", "--streams", "2"]),
        "embedrt int8 1 stream": Server([*py, "--precision", "int8", "--streams", "1"]),
        "embedrt int8 2 streams": Server([*py, "--precision", "int8", "--streams", "2"]),
        "infinity torch": Server(torch),
    }
    for name, precision in (("infinity optimum", "fp32"), ("infinity optimum int8", "int8")):
        out[name] = Server(optimum, onnx_dir / precision / "model", server_env(onnx_dir, precision))
    return out


def check_prepared(chosen: dict[str, Server]) -> None:
    """An infinity optimum server without its files (or its optimized graph) is an error naming
    the fix, before any round starts, not a server that fails to start or silently serves the
    unoptimized graph."""
    for name, server in chosen.items():
        if server.cwd is None:
            continue
        precision = "int8" if name.endswith("int8") else "fp32"
        hub = Path(server.env["HUGGINGFACE_HUB_CACHE"])
        if not (server.cwd / INFINITY_ONNX_FILES[precision]).is_file() or not list(
            hub.glob("infinity_onnx/*/*_optimized.onnx")
        ):
            raise SystemExit(f"{name}: no ONNX files in {server.cwd.parent}; run with --setup")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def vectors(route: str, body: bytes) -> np.ndarray:
    data = json.loads(body)["data"]
    return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), "<f4") for d in data])


def one_server(name: str, server: Server, port: int, texts: list[str], ref: dict) -> dict:
    import httpx

    route = "infinity" if name.startswith("infinity") else "openai"
    path = ROUTES[route][0]
    env = dict(os.environ, HF_HUB_OFFLINE="1", INFINITY_ANONYMOUS_USAGE_STATS="0", **server.env)
    log = tempfile.NamedTemporaryFile(prefix="serve_peers_", suffix=".log", delete=False)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        server.cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=server.cwd
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:  # cold start: until the first embedding is answered
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                raise SystemExit(f"{name} did not start: see {log.name}")
            try:
                r = httpx.post(url + path, json=ROUTES[route][1](["warm up"]), timeout=30)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        cold = time.perf_counter() - t0
        arun(load(url, texts[:64], 8, 60, route))  # warm-up: shapes, allocator, caches
        out: dict = {"cold_start_s": cold}
        worst = 1.0
        for pattern, (clients, per) in PATTERNS.items():
            groups = [texts[i : i + per] for i in range(0, len(texts), per)]
            run = arun(load(url, groups, clients, 300, route))
            lat = np.array([s for _, status, s, _ in run["results"] if status == 200])
            ok = [(i, b) for i, status, _, b in run["results"] if status == 200]
            for i, body in ok:
                got = vectors(route, body)
                want = np.stack([ref[t] for t in groups[i]])
                cos = (
                    (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
                )
                worst = min(worst, float(cos.min()))
            out[pattern] = {
                "texts_per_s": sum(len(groups[i]) for i, _ in ok) / run["wall_s"],
                "p50_ms": float(np.percentile(lat, 50) * 1000),
                "p99_ms": float(np.percentile(lat, 99) * 1000),
                "errors": len(run["results"]) - len(ok),
            }
        out["peak_rss_mb"] = peak_rss_mb(proc.pid)
        out["min_cosine_to_st"] = worst
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def reference(texts: list[str]) -> dict[str, np.ndarray]:
    """SentenceTransformer.encode (torch, fp32) of every text: what both servers should give."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_dir(), device="cpu")
    return dict(zip(texts, st.encode(texts, batch_size=64), strict=True))


def setup() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(INFINITY_VENV)], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as pins:
        # pip refuses extras in a constraints file: the pins without them.
        pins.write("\n".join(p.replace("[server,torch,optimum]", "") for p in INFINITY_PINS) + "\n")
    pip = [str(INFINITY_VENV / "bin" / "pip"), "install", "-c", pins.name]
    subprocess.run(
        [*pip, "torch==2.13.0", "infinity-emb[server,torch,optimum]==0.0.78"], check=True
    )
    py = str(INFINITY_VENV / "bin" / "python")
    onnx = ["--st-model", model_dir(), "--out", str(infinity_onnx_dir())]
    subprocess.run([py, str(ROOT / "bench" / "infinity_onnx.py"), *onnx], check=True)


def median(xs: list[float]) -> float:
    return float(np.median(xs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--texts", type=int, default=1024, help="STS-B sentences per pattern")
    ap.add_argument("--port", type=int, default=18431)
    ap.add_argument(
        "--setup",
        action="store_true",
        help="build .venv-infinity and infinity's ONNX folders, then exit",
    )
    ap.add_argument("--shared", action="store_true", help="say the machine was shared")
    ap.add_argument(
        "--servers",
        help=f"comma-separated names to run (default: {', '.join(DEFAULT_SERVERS)})",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results" / "serve_peers",
        help="path of the results without suffix (.json and .md are written)",
    )
    args = ap.parse_args()
    if args.setup:
        return setup()
    chosen = servers(args.port, infinity_onnx_dir())
    if args.servers:
        names = [n.strip() for n in args.servers.split(",")]
        unknown = sorted(set(names) - set(chosen))
        if unknown:
            raise SystemExit(f"unknown servers {unknown}; known: {sorted(chosen)}")
        chosen = {n: s for n, s in chosen.items() if n in names}
    else:
        chosen = {n: s for n, s in chosen.items() if n in DEFAULT_SERVERS}
    check_prepared(chosen)
    texts = sentences(args.texts)
    ref = reference(texts + ["warm up"])
    load0 = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in chosen}
    for r in range(args.rounds):
        order = list(chosen.items())
        if r % 2:
            order.reverse()  # alternate, so drift hits every server alike
        for name, server in order:
            runs[name].append(one_server(name, server, args.port, texts, ref))
            print(name, f"round {r + 1}", json.dumps(runs[name][-1]), flush=True)
    summary = {}
    for name, rs in runs.items():
        s: dict = {
            "cold_start_s": median([x["cold_start_s"] for x in rs]),
            "peak_rss_mb": max(x["peak_rss_mb"] for x in rs),
            "min_cosine_to_st": min(x["min_cosine_to_st"] for x in rs),
        }
        for p in PATTERNS:
            s[p] = {k: median([x[p][k] for x in rs]) for k in ("texts_per_s", "p50_ms", "p99_ms")}
            s[p]["errors"] = sum(x[p]["errors"] for x in rs)
        summary[name] = s
    write(args, summary, runs, load0, os.getloadavg())


def fastest_infinity(summary: dict) -> dict[str, str]:
    """Per pattern, the infinity server with the most texts/s: the issue's goal is measured
    against infinity's best engine, whichever that is on the pattern."""
    inf = [n for n in summary if n.startswith("infinity")]
    return (
        {p: max(inf, key=lambda n: summary[n][p]["texts_per_s"]) for p in PATTERNS} if inf else {}
    )


def write(args, summary: dict, runs: dict, load0: tuple, load1: tuple) -> None:
    command = "python bench/serve_peers.py " + shlex.join(sys.argv[1:])
    best = fastest_infinity(summary)
    doc = {
        "command": command,
        "machine": describe(),
        "load_avg_before_after": [load0[0], load1[0]],
        "shared_machine": args.shared,
        "rounds": args.rounds,
        "texts": args.texts,
        "fastest_infinity": best,
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(doc, indent=2) + "\n")
    rows = []
    for name, s in summary.items():
        ratio = " / ".join(
            f"{s[p]['texts_per_s'] / summary[best[p]][p]['texts_per_s']:.2f}x" if best else "-"
            for p in PATTERNS
        )
        rows.append(
            f"| {name} | {s['64x1']['texts_per_s']:.0f} | {s['64x1']['p50_ms']:.0f} / "
            f"{s['64x1']['p99_ms']:.0f} | {s['8x32']['texts_per_s']:.0f} | "
            f"{s['8x32']['p50_ms']:.0f} / {s['8x32']['p99_ms']:.0f} | {s['peak_rss_mb']:.0f} | "
            f"{s['cold_start_s']:.1f} | {s['min_cosine_to_st']:.4f} | {ratio} |"
        )
    shared = (
        "The machine was SHARED with other engineers' test runs during this run: figures carry "
        "that noise; ratios within a round are what to read."
        if args.shared
        else "Run on an otherwise idle machine."
    )
    fastest = "; ".join(f"{p}: {n}" for p, n in best.items()) or "no infinity server in this run"
    md = f"""# embedrt serve beside infinity-emb

`{command}` ({args.rounds} alternating rounds, a fresh server process per round, {args.texts}
STS-B dev sentences per pattern, OpenAI-style route with base64 answers, client on the same
cores; load average {load0[0]:.1f} before, {load1[0]:.1f} after; {doc["machine"]}). {shared}

Medians over rounds; peak RSS the largest; min cosine over every answered vector against
SentenceTransformer.encode (torch fp32). The last column divides by infinity's fastest server on
each pattern ({fastest}).

| server | 64x1 texts/s | 64x1 p50 / p99 ms | 8x32 texts/s | 8x32 p50 / p99 ms | peak RSS MB | cold start s | min cosine to ST | texts/s vs infinity's fastest (64x1 / 8x32) |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

infinity-emb 0.0.78 ran from `.venv-infinity` (`python bench/serve_peers.py --setup`, pins in the
script), with its defaults (batch size 32, warm-up at start) except where said:

- torch engine: sentence-transformers 3.4.1, torch 2.13.0 CPU, on the sentence-transformers
  folder itself.
- optimum engine (optimum 2.1.0, onnxruntime 1.32.0): offline it needs an ONNX folder, which
  bench/infinity_onnx.py makes: `model.onnx` (optimum's export) for fp32 and
  `model_quantized.onnx` (optimum's dynamic AVX-512 VNNI int8, the recipe sentence-transformers
  uses) for int8; infinity never quantizes by itself, on CPU it serves a file named *quantize*
  when there is one. It graph-optimizes what it loads (ORT level 99), but under optimum 2.1 its
  own call fails (a removed keyword) and it silently serves the unoptimized graph; setup runs
  the same optimization and puts it where infinity looks, so these figures are its optimized
  engine. It pools by CLS unless told (cosine 0.13-0.56 to sentence-transformers, issue 21):
  these servers ran with `--pooling-method mean`, which the cosine column checks.
- Truncation: infinity's optimum engine tokenizes up to the model's max_position_embeddings, 512
  tokens, where sentence-transformers, embedrt and infinity's torch engine stop at this model's
  max_seq_length, 256. These STS-B sentences have at most 28 tokens, so the cosine column cannot
  show it; a text longer than 256 tokens gets a different vector (and more compute) from
  infinity's optimum engine than from sentence-transformers.
"""
    Path(f"{args.out}.md").write_text(md)


if __name__ == "__main__":
    main()
