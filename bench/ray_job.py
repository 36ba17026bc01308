"""The local embed job vs the same job on Ray Data with 2 actors, on this machine.

    python bench/ray_job.py --artifact artifacts/all-MiniLM-L6-v2 --rows 6000 --repeats 2 \
        --out bench/results/ray_job

Input: STS-B sentences cycled to --rows, one parquet file (id, text). Each run is one
`embedrt embed` command in a fresh process, timed from start to exit (imports, model loads,
scan, inference, writes), alternated --repeats times; medians:

  local         embedrt embed IN -o OUT.parquet                       (one process, 2 threads)
  ray, new      embedrt embed IN -o OUT --ray --actors 2             (starts a local Ray cluster)
  ray, joined   embedrt embed IN -o OUT --ray --actors 2 --ray-address ADDR
                (joins a 2-CPU cluster this script started beforehand: how a cluster is used)

The job's own time (its summary line) is recorded too. The Ray output is checked against the
local output: ids equal, embeddings within 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_job import sts_sentences  # noqa: E402  (the same STS-B texts as bench-embed)
from machine import describe  # noqa: E402

MODES = ("local", "ray_new", "ray_joined")


def write_input(path: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sentences = sts_sentences()
    pq.write_table(
        pa.table(
            {
                "id": [str(i) for i in range(rows)],
                "text": [sentences[i % len(sentences)] for i in range(rows)],
            }
        ),
        path,
    )


def run(mode: str, args: argparse.Namespace, src: Path, tmp: Path, address: str) -> dict:
    out = tmp / f"{mode}.parquet"
    cmd = [
        sys.executable,
        "-m",
        "embedrt.cli",
        "embed",
        str(src),
        "-m",
        args.artifact,
        "-o",
        str(out),
        "--id-field",
        "id",
        "--overwrite",
        "--progress",
        "none",
        "--device",
        "cpu",
    ]
    if mode != "local":
        cmd += ["--ray", "--actors", str(args.actors)]
    if mode == "ray_joined":
        cmd += ["--ray-address", address]
    load = os.getloadavg()[0]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"{mode} failed:\n{res.stderr[-3000:]}")
    job_s = float(re.search(r"embedded [\d,]+ rows.* in ([0-9.]+) s", res.stderr).group(1))
    print(
        f"  {mode:10} {wall:6.1f} s wall ({args.rows / wall:6.1f} rows/s), job {job_s:6.1f} s, "
        f"load average {load:.1f}",
        flush=True,
    )
    return {"wall_s": wall, "job_s": job_s, "load_avg_1min": load, "rows_per_s": args.rows / wall}


def read(path: Path) -> tuple[list, np.ndarray]:
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    col = t["embedding"].combine_chunks()
    return t["id"].to_pylist(), col.flatten().to_numpy().reshape(len(col), col.type.list_size)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--artifact", default="artifacts/all-MiniLM-L6-v2")
    ap.add_argument("--rows", type=int, default=6000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--out", default="bench/results/ray_job")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]

    import ray

    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "in.parquet"
        write_input(src, args.rows)
        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        cluster_start_s = time.perf_counter() - t
        address = ray.get_runtime_context().gcs_address
        try:
            print(
                f"{args.rows} rows, {args.repeats} alternated repeats; cluster for 'joined' "
                f"started in {cluster_start_s:.1f} s",
                flush=True,
            )
            for _ in range(args.repeats):
                for mode in MODES:
                    runs[mode].append(run(mode, args, src, tmp, address))
        finally:
            ray.shutdown()
        ids, local = read(tmp / "local.parquet")
        ray_ids, remote = read(tmp / "ray_joined.parquet")
        files = len(list((tmp / "ray_joined.parquet").glob("*.parquet")))
    same_ids = ids == ray_ids
    max_abs = float(np.abs(local - remote).max())
    if not same_ids or max_abs > 1e-5:
        sys.exit(
            f"Ray output differs from the local job's: ids equal {same_ids}, max abs {max_abs}"
        )

    med = {
        m: {k: statistics.median(r[k] for r in v) for k in ("wall_s", "job_s")}
        for m, v in runs.items()
    }
    result = {
        "machine": f"{describe()}, 1-min load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}",
        "artifact": args.artifact,
        "rows": args.rows,
        "repeats": args.repeats,
        "actors": args.actors,
        "cluster_start_s": round(cluster_start_s, 2),
        "ray_output_files": files,
        "check": {"ids_equal": same_ids, "max_abs_diff_vs_local": max_abs},
        "median": {m: {k: round(v, 2) for k, v in d.items()} for m, d in med.items()},
        "rows_per_s_wall": {m: round(args.rows / d["wall_s"], 1) for m, d in med.items()},
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    names = {
        "local": "local job (`embedrt embed`, one process)",
        "ray_new": f"`--ray --actors {args.actors}`, starting a local cluster",
        "ray_joined": f"`--ray --actors {args.actors} --ray-address`, cluster already up",
    }
    lines = [
        f"{args.rows} STS-B rows (parquet in and out), {Path(args.artifact).name}, CPU "
        f"({result['machine']}); median of {args.repeats} alternated runs, each a fresh "
        "`embedrt embed` process timed from start to exit",
        "",
        "| | wall s | rows/s | job s (its summary) | wall vs local |",
        "|---|---|---|---|---|",
    ]
    for m in MODES:
        lines.append(
            f"| {names[m]} | {med[m]['wall_s']:.1f} | {args.rows / med[m]['wall_s']:.1f} | "
            f"{med[m]['job_s']:.1f} | {med[m]['wall_s'] / med['local']['wall_s']:.2f}x |"
        )
    lines += [
        "",
        f"Ray output: {files} parquet files; ids equal to the local job's: {same_ids}; "
        f"max abs difference of embeddings {max_abs:.1e}. Starting the 2-CPU cluster in this "
        f"script took {cluster_start_s:.1f} s.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
