"""The README's headline table, written from bench/results/throughput_sentences.json.

    python bench/headline.py           # rewrite the table in README.md (make bench runs it)
    python bench/headline.py --check   # exit 1 if README.md's table is not what the results say

The figures live in bench/results; the README shows them between two markers and nothing else
writes there, so the table cannot go stale: the test suite runs --check.
"""

from __future__ import annotations

import argparse
import json
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
        "a fresh process per candidate.",
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


def with_table(readme: str, results: dict) -> str:
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + table(results) + "\n" + readme[end:]


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
                "README.md's headline table differs from bench/results/throughput_sentences.json;"
                " run: python bench/headline.py",
                file=sys.stderr,
            )
            return 1
        return 0
    README.write_text(want, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
