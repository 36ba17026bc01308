"""Resident memory of a loaded model, fresh process by fresh process, with and without
malloc.model_load (glibc's mmap threshold pinned low while ONNX Runtime loads), and with the
variant's token tables inside its graph instead of in its data file (export/tables.py).

    python bench/load_rss.py --artifact artifacts/all-mpnet-base-v2 --variant fp32 --loads 8
    python bench/load_rss.py --artifact artifacts/all-mpnet-base-v2 --variant fp32 --loads 6 \
        --settings with,inline-tables --out bench/results/load_rss_tables

The same load can end at two resident sizes, depending on the order in which glibc's heap got
the load's freed blocks back (runtime/malloc.py), so one process says little: --loads fresh
processes per setting, alternated. Each loads the variant (Encoder.load, 2 threads, no
streams), reads VmRSS and VmHWM, encodes 64 texts of the paragraphs corpus and reads VmHWM
again. "without" is the same process with model_load replaced by a no-op; "inline-tables"
loads a copy of the artifact (made once, in a temporary directory) whose graph holds its tables,
as artifacts exported before format 2 did: the same weights, graph and manifest otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402

SETTINGS = ("with", "without", "inline-tables")


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


def inline_twin(artifact: Path, variant: str, directory: Path) -> Path:
    """A copy of the artifact with only `variant`, its tables inside the graph (format 1)."""
    import onnx

    from embedrt.export.tables import set_record
    from embedrt.manifest import sha256_file

    doc = json.loads((artifact / "embedrt.json").read_text())
    entry = next(v for v in doc["variants"] if v["name"] == variant)
    model = onnx.load(str(artifact / entry["file"]))  # its external data read in
    set_record(model, None)
    onnx.save(model, str(directory / entry["file"]))
    shutil.copy(artifact / doc["tokenizer"]["file"], directory)
    entry.update(sha256=sha256_file(directory / entry["file"]), data=None, tables=[])
    doc.update(variants=[entry], format=1)
    (directory / "embedrt.json").write_text(json.dumps(doc, indent=2))
    return directory


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--artifact", default="artifacts/all-mpnet-base-v2")
    ap.add_argument("--variant", default="fp32")
    ap.add_argument("--loads", type=int, default=8, help="fresh processes per setting")
    ap.add_argument("--settings", default="with,without", help=f"comma-separated, of {SETTINGS}")
    ap.add_argument("--out", default="bench/results/load_rss")
    ap.add_argument("--setting", choices=SETTINGS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.setting:
        return worker(args)

    settings = args.settings.split(",")
    if not set(settings) <= set(SETTINGS):
        sys.exit(f"--settings: each one of {SETTINGS}")
    tmp = Path(tempfile.mkdtemp(prefix="load_rss_"))
    twin = (
        inline_twin(Path(args.artifact), args.variant, tmp) if "inline-tables" in settings else None
    )
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    for i in range(args.loads):
        for setting in settings if i % 2 == 0 else settings[::-1]:
            artifact = str(twin) if setting == "inline-tables" else args.artifact
            worker_setting = "with" if setting == "inline-tables" else setting
            cmd = [sys.executable, __file__, "--setting", worker_setting, "--artifact", artifact]
            out = subprocess.run(
                [*cmd, "--variant", args.variant], capture_output=True, text=True, timeout=600
            )
            if out.returncode != 0:
                sys.exit(f"{setting}: {out.stderr.strip().splitlines()[-1:]}")
            runs[setting].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(setting, runs[setting][-1], flush=True)
    shutil.rmtree(tmp)
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
        "| setting | loaded RSS MB: min / median / max | load's peak MB: min / median "
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
        "by a no-op in that process (glibc's default, dynamic mmap threshold). inline-tables: "
        "with, on a copy of the artifact whose graph holds its token tables (format 1, as "
        "exported before the tables moved to the data file).",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
