"""bench/latency.py end to end: real worker processes on the tiny artifact, every text timed on
every candidate, ratios against the baseline, and a candidate that cannot load named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "latency.py"


def _run(artifact: Path, out: Path, candidates: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--artifact", str(artifact), "--st-model", "unused"]
    cmd += [
        "--corpus",
        "sentences",
        "--texts",
        "12",
        "--block",
        "5",
        "--warm",
        "2",
        "--gap-ms",
        "1",
    ]
    cmd += ["--candidates", candidates, "--baseline", "embedrt-fp32", "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_every_text_is_timed_on_every_candidate(tiny_artifact, tmp_path):
    done = _run(tiny_artifact, tmp_path / "lat", "embedrt-fp32,embedrt-fp32@no-arena")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "lat.json").read_text())
    results = report["results"]
    assert list(results) == ["embedrt-fp32", "embedrt-fp32@no-arena"]
    for r in results.values():
        assert r["texts"] == 12  # 3 blocks (5, 5, 2), none lost
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["per_text_ratio_median"] > 0
    base = results["embedrt-fp32"]
    assert [base[f"p{p}_vs_baseline"] for p in (50, 95, 99)] == [1.0, 1.0, 1.0]
    other = results["embedrt-fp32@no-arena"]
    assert abs(other["p50_vs_baseline"] - other["p50_ms"] / base["p50_ms"]) < 0.05
    md = (tmp_path / "lat.md").read_text()
    assert "Command: `python " in md and "| embedrt-fp32@no-arena |" in md
    assert not list(tmp_path.glob(".corpus-*"))  # the texts' file is removed


def test_a_candidate_that_cannot_load_is_named(tiny_artifact, tmp_path):
    done = _run(tiny_artifact, tmp_path / "lat", "embedrt-fp32,no-such-candidate")
    assert done.returncode != 0
    assert "no-such-candidate failed" in done.stderr
    assert not (tmp_path / "lat.json").exists()
