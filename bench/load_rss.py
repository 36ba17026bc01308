"""Resident memory of a loaded model, fresh process by fresh process, with and without
malloc.model_load (glibc's mmap threshold pinned low while ONNX Runtime loads).

    python bench/load_rss.py --artifact artifacts/all-mpnet-base-v2 --variant fp32 --loads 8

The same load can end at two resident sizes, depending on the order in which glibc's heap got
the load's freed blocks back (runtime/malloc.py), so one process says little: --loads fresh
processes per setting, alternated. Each loads the variant (Encoder.load, 2 threads, no
streams), reads VmRSS and VmHWM, encodes 64 texts of the paragraphs corpus and reads VmHWM
again. "without" is the same process with model_load replaced by a no-op.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402

SETTINGS = ("with", "without")


def status_mb(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        found = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.MULTILINE)
    assert found, key
    return round(int(found.group(1)) / 1024, 1)


def worker(args: argparse.Namespace) -> None:
    import contextlib

    from corpus import build_corpus

    texts = build_corpus(64, kind="paragraphs")
    if args.setting == "without":
        import embedrt.session

        embedrt.session.model_load = contextlib.nullcontext  # type: ignore[assignment]
    from embedrt import Encoder

    base = status_mb("VmRSS")
    enc = Encoder.load(args.artifact, device="cpu", variant=args.variant, threads=2, streams=1)
    loaded, load_peak = status_mb("VmRSS"), status_mb("VmHWM")
    enc.encode(texts, batch_size=32)
    print(
        json.dumps(
            {
                "before_mb": base,
                "loaded_mb": loaded,
                "load_peak_mb": load_peak,
                "peak_after_encode_mb": status_mb("VmHWM"),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--artifact", default="artifacts/all-mpnet-base-v2")
    ap.add_argument("--variant", default="fp32")
    ap.add_argument("--loads", type=int, default=8, help="fresh processes per setting")
    ap.add_argument("--out", default="bench/results/load_rss")
    ap.add_argument("--setting", choices=SETTINGS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.setting:
        return worker(args)

    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for i in range(args.loads):
        for setting in SETTINGS if i % 2 == 0 else SETTINGS[::-1]:
            cmd = [sys.executable, __file__, "--setting", setting, "--artifact", args.artifact]
            out = subprocess.run(
                [*cmd, "--variant", args.variant], capture_output=True, text=True, timeout=600
            )
            if out.returncode != 0:
                sys.exit(f"{setting}: {out.stderr.strip().splitlines()[-1:]}")
            runs[setting].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(setting, runs[setting][-1], flush=True)
    machine = f"{describe()}, 1-min load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}"
    command = " ".join(["python bench/load_rss.py", *sys.argv[1:]])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine, "command": command, "artifact": args.artifact}
    doc |= {"variant": args.variant, "runs": runs}
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        f"{Path(args.artifact).name} {args.variant}, {args.loads} fresh processes per setting, "
        f"alternated; CPU ({machine})",
        "",
        "| malloc.model_load | loaded RSS MB: min / median / max | load's peak MB: min / median "
        "/ max | peak after encoding 64 paragraphs MB: min / median / max |",
        "|---|---|---|---|",
    ]
    for setting, rs in runs.items():
        cells = []
        for key in ("loaded_mb", "load_peak_mb", "peak_after_encode_mb"):
            xs = [r[key] for r in rs]
            cells.append(f"{min(xs):.0f} / {float(np.median(xs)):.0f} / {max(xs):.0f}")
        lines.append(f"| {setting} | {' | '.join(cells)} |")
    lines += [
        "",
        f"`{command}`",
        "",
        "Each process: Encoder.load (2 threads, streams=1), VmRSS and VmHWM, then encode of 64 "
        "Wikipedia paragraphs (bench/corpus.py) and VmHWM again. without: model_load replaced "
        "by a no-op in that process (glibc's default, dynamic mmap threshold).",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
