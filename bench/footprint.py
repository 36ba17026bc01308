"""Footprint of the lean runtime against sentence-transformers: install size, import time, and
cold start (process start to first embedding), side by side on the same machine and model.

    python bench/footprint.py --lean-python .venv-lean/bin/python --st-python .venv/bin/python \
        --artifact artifacts/all-MiniLM-L6-v2 --out bench/results/footprint

Each timing is the median of --runs fresh processes. Install size is the venv's site-packages.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import describe  # bench/machine.py (this script runs from bench/)

IMPORT = {"embedrt": "import embedrt", "sentence-transformers": "import sentence_transformers"}
COLD = {
    "embedrt": "from embedrt import Encoder; Encoder.load({path!r}, device='cpu').encode(['hello world'])",
    "sentence-transformers": (
        "from sentence_transformers import SentenceTransformer; "
        "SentenceTransformer({path!r}, device='cpu').encode(['hello world'])"
    ),
}


def site_packages_mb(python: str) -> float:
    out = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    total = sum(
        p.stat().st_size for p in Path(out).rglob("*") if p.is_file() and not p.is_symlink()
    )
    return total / 2**20


def median_seconds(python: str, code: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(
            [python, "-c", code],
            check=True,
            capture_output=True,
            env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        )
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lean-python", required=True)
    ap.add_argument("--st-python", required=True)
    ap.add_argument("--artifact", required=True)
    ap.add_argument(
        "--st-model", required=True, help="sentence-transformers folder of the same model"
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    rows = {}
    for name, python, path in (
        ("embedrt", args.lean_python, args.artifact),
        ("sentence-transformers", args.st_python, args.st_model),
    ):
        rows[name] = {
            "install_mb": round(site_packages_mb(python), 1),
            "import_s": round(median_seconds(python, IMPORT[name], args.runs), 3),
            "cold_start_s": round(
                median_seconds(python, COLD[name].format(path=str(path)), args.runs), 3
            ),
        }
    e, s = rows["embedrt"], rows["sentence-transformers"]
    ratios = {k: round(s[k] / e[k], 1) for k in e}
    result = {
        "machine": describe(),
        "runs": args.runs,
        "results": rows,
        "sentence_transformers_over_embedrt": ratios,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Footprint: embedrt[cpu] against sentence-transformers with torch",
        "",
        f"`make bench-footprint` (bench/footprint.py, each in its own venv); times are medians of "
        f"{args.runs} fresh processes; {result['machine']}",
        "",
        "| | install (MB) | import (s) | cold start to first embedding (s) |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['install_mb']} | {r['import_s']} | {r['cold_start_s']} |")
    lines.append(
        f"| ratio (sentence-transformers / embedrt) | {ratios['install_mb']}x | "
        f"{ratios['import_s']}x | {ratios['cold_start_s']}x |"
    )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
