"""The README's headline tables, written from bench/results/throughput*.json: the sentences run
in full, then embedrt's ratios to sentence-transformers per model and corpus, with the single-text
ratios from the paired runs of bench/results/latency*.json (bench/latency.py).

    python bench/headline.py           # rewrite the table in README.md (make bench runs it)
    python bench/headline.py --check   # exit 1 if README.md's table is not what the results say

The figures live in bench/results; the README shows them between two markers and nothing else
writes there, so the table cannot go stale: the test suite runs --check.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "throughput_sentences.json"
README = ROOT / "README.md"
BEGIN = (
    "<!-- headline: written by bench/headline.py from bench/results/throughput_sentences.json -->"
)
END = "<!-- /headline -->"

CANDIDATES = {
    "embedrt-int8": "embedrt-int8 (what `auto` loads on CPU)",
    "embedrt-opt": "embedrt-opt (what `fp32` loads on CPU)",
    "embedrt-fp32": 'embedrt-fp32 (`variant="fp32"`)',
    "st-torch": "st-torch (sentence-transformers)",
    "st-onnx": "st-onnx (its ONNX backend)",
    "st-onnx-int8": "st-onnx-int8 (its dynamic int8)",
    "fastembed": "fastembed",
}


def table(results: dict) -> str:
    """The Markdown table (and the line that says what was measured) for these results."""
    r = results
    lines = [
        f"all-MiniLM-L6-v2, {r['texts']} STS-B sentences, {r['threads']} CPU threads, batch "
        f"{r['batch_size']}, spinning {r['spinning']}, medians of {r['rounds']} interleaved rounds, "
        f"a fresh process per candidate; CPU: {cpu_of(r)}.",
        "",
        "| candidate | texts/s | vs st-torch | single text p50 ms | cold start s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in CANDIDATES.items():
        c = r["results"].get(name)
        if c is None:
            continue
        lines.append(
            f"| {label} | {c['texts_per_s']} | {c['speed_vs_st_torch']}x | "
            f"{c['latency_single_ms']['p50']} | {c['cold_start_s']} | {c['peak_rss_mb']} |"
        )
    return "\n".join(lines)


# Every corpus the bench runs (bench/corpus.py), by its results file; issue 20's targets per
# corpus: int8 >= 5x st-torch's texts/s, single-text p50 <= 1/6 (fp32 1/3), peak RSS <= 1/3
# (fp32 1/2).
CORPORA = {
    ("all-MiniLM-L6-v2", "sentences"): ("throughput_sentences.json", "latency_sentences.json"),
    ("all-MiniLM-L6-v2", "paragraphs"): ("throughput_paragraphs.json", "latency_paragraphs.json"),
    ("all-MiniLM-L6-v2", "long-tail"): ("throughput.json", "latency_long-tail.json"),
    ("all-MiniLM-L6-v2", "documents"): ("throughput_documents.json", "latency_documents.json"),
    ("all-mpnet-base-v2", "sentences"): ("throughput_mpnet.json", "latency_mpnet_sentences.json"),
    ("all-mpnet-base-v2", "paragraphs"): (
        "throughput_mpnet_paragraphs.json",
        "latency_mpnet_paragraphs.json",
    ),
}


def corpus_table(results_dir: Path) -> str:
    """embedrt's int8 and fp32 against st-torch on each model and corpus with results, as
    ratios: texts/s and peak RSS from the throughput run, single-text p50 and p99 from the
    paired latency run (each candidate on the same texts in the same minutes)."""
    lines = [
        "embedrt int8 / fp32 as ratios to st-torch, per model and corpus (texts/s and peak RSS: "
        "bench/results/throughput*.md; single text, each candidate timed on the same texts in "
        'turn: bench/results/latency*.md; fp32 is what `precision="fp32"` loads on the CPU: the '
        "optimized graph where the model has one):",
        "",
        "| model | corpus | tokens per text | texts/s | single text p50 | single text p99 "
        "| peak RSS | CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (model, corpus), (name, paired) in CORPORA.items():
        path = results_dir / name
        if not path.is_file():
            continue
        r = json.loads(path.read_text(encoding="utf-8"))
        base = r["results"].get("st-torch")
        if not base or "texts_per_s" not in base:
            continue
        pair = _int8_fp32(r["results"])
        cells = [
            " / ".join(f"{c[key] / base[key]:.2f}x" if c else "-" for c in pair)
            for key in ("texts_per_s", "peak_rss_mb")
        ]
        cells[1:1] = _latency_cells(results_dir / paired)
        lines.append(
            f"| {model} | {corpus} | {r['tokens'] / r['texts']:.0f} | "
            + " | ".join(cells)
            + f" | {cpu_of(r)} |"
        )
    return "\n".join(lines)


def _int8_fp32(results: dict) -> list[dict | None]:
    """int8's and fp32's results; fp32 as precision="fp32" loads it on the CPU: the optimized
    graph where there is one."""
    return [results.get("embedrt-int8"), results.get("embedrt-opt") or results.get("embedrt-fp32")]


def _latency_cells(path: Path) -> list[str]:
    """The p50 and p99 cells from a paired latency run's ratios to st-torch, or "-"."""
    run = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if run.get("baseline") != "st-torch" or "st-torch" not in run.get("results", {}):
        return ["-", "-"]
    pair = _int8_fp32(run["results"])
    return [
        " / ".join(f"{c[f'p{p}_vs_baseline']:.2f}x" if c else "-" for c in pair) for p in (50, 99)
    ]


def cpu_of(result: dict) -> str:
    """The CPU generation a result was measured on (bench/machine.py), or its family and model:
    int8's ratios move with it."""
    found = re.search(r"\(family (\d+) model (\d+)(?:, ([^;)]+))?", result.get("machine", ""))
    if not found:
        return "not recorded"
    family, model, generation = found.groups()
    return generation or f"family {family} model {model}"


def with_table(readme: str, results: dict) -> str:
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    body = table(results) + "\n\n" + corpus_table(RESULTS.parent)
    return readme[:start] + "\n" + body + "\n" + readme[end:]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = ap.parse_args()
    readme = README.read_text(encoding="utf-8")
    want = with_table(readme, json.loads(RESULTS.read_text(encoding="utf-8")))
    if args.check:
        if want != readme:
            print(
                "README.md's headline tables differ from bench/results (throughput*.json,"
                " latency*.json); run: python bench/headline.py",
                file=sys.stderr,
            )
            return 1
        return 0
    README.write_text(want, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
