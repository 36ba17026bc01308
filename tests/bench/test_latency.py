"""bench/latency.py: real worker processes on the tiny artifact, every text timed on every
candidate in a shuffled order, ratios against the baseline text by text, and a candidate that
cannot load, or fails mid-run, named with nothing left behind."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import latency  # noqa: E402
from corpus import write_corpus  # noqa: E402


def _run(artifact: Path, out: Path, candidates: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(BENCH / "latency.py"), "--artifact", str(artifact)]
    cmd += ["--st-model", "unused", "--corpus", "sentences", "--texts", "12", "--block", "5"]
    cmd += ["--warm", "2", "--gap-ms", "1", "--candidates", candidates]
    cmd += ["--baseline", "embedrt-fp32", "--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_every_text_is_timed_on_every_candidate(tiny_artifact, tmp_path):
    done = _run(tiny_artifact, tmp_path / "lat", "embedrt-fp32,embedrt-fp32@no-arena")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "lat.json").read_text())
    results = report["results"]
    assert list(results) == ["embedrt-fp32", "embedrt-fp32@no-arena"]
    for name, r in results.items():
        assert r["texts"] == 12 == len(report["times_ms"][name])  # 3 blocks (5, 5, 2), none lost
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    times = {n: np.array(t) for n, t in report["times_ms"].items()}
    other = results["embedrt-fp32@no-arena"]
    ratios = times["embedrt-fp32@no-arena"] / times["embedrt-fp32"]
    assert other["per_text_ratio_median"] == pytest.approx(np.median(ratios), abs=1e-3)
    want = np.percentile(times["embedrt-fp32@no-arena"], 50) / np.percentile(
        times["embedrt-fp32"], 50
    )
    assert other["p50_vs_baseline"] == pytest.approx(want, abs=1e-3)
    md = (tmp_path / "lat.md").read_text()
    assert "Command: `python " in md and "| embedrt-fp32@no-arena |" in md
    assert not list(tmp_path.glob(".corpus-*"))  # the texts' file is removed


def test_a_candidate_that_cannot_load_is_named(tiny_artifact, tmp_path):
    done = _run(tiny_artifact, tmp_path / "lat", "embedrt-fp32,no-such-candidate")
    assert done.returncode != 0
    assert "no-such-candidate failed" in done.stderr
    assert not (tmp_path / "lat.json").exists()
    assert not list(tmp_path.glob(".corpus-*"))


def test_a_candidate_that_fails_mid_run_is_named(tiny_artifact, tmp_path):
    args = argparse.Namespace(
        artifact=tiny_artifact, st_model="unused", batch_size=32, threads=1, latency_n=0,
        spinning="run",
    )  # fmt: skip
    corpus = tmp_path / "texts.jsonl"
    write_corpus(corpus, ["a text", "another text"])
    worker = latency.Candidate("embedrt-fp32", args, corpus)
    try:
        assert worker.time("a text") > 0
        with pytest.raises(SystemExit, match="embedrt-fp32 failed .*surrogate"):
            worker.time("a lone \ud800 surrogate")  # encode refuses it: the worker ends
        assert worker.proc.poll() is not None
    finally:
        worker.close()


def test_ratios_are_per_text_and_the_order_is_shuffled():
    base = [1.0, 2.0, 4.0, 8.0]
    half = [0.5, 1.0, 2.0, 4.0]
    shuffled = [4.0, 2.0, 1.0, 0.5]  # the same times, not text by text
    out = latency.summary({"b": base, "half": half, "mixed": shuffled}, "b")
    assert out["half"]["per_text_ratio_median"] == 0.5
    assert out["mixed"]["per_text_ratio_median"] != 0.5
    assert out["half"]["p50_vs_baseline"] == out["mixed"]["p50_vs_baseline"] == 0.5
    with pytest.raises(ValueError, match="different numbers of texts"):
        latency.summary({"b": base, "short": half[:3]}, "b")
    orders = latency.turn_orders(15, 4)
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert len({o[0] for o in orders}) == 4  # every candidate goes first some time
    before = {(o[i - 1], o[i]) for o in orders for i in range(1, 4)}
    assert all(len({a for a, b in before if b == k}) > 1 for k in range(4))
    assert orders == latency.turn_orders(15, 4)  # seeded: a rerun runs the same orders


def test_a_turn_waits_for_the_last_process_to_go_quiet():
    busy = "import time\nt = time.time()\nwhile time.time() - t < 0.4: pass\ntime.sleep(5)"
    procs = [
        subprocess.Popen([sys.executable, "-c", code])
        for code in ("import time; time.sleep(5)", busy)
    ]
    try:
        time_taken = []
        for proc in procs:
            start = time.monotonic()
            latency.wait_idle(proc.pid, 0.005)
            time_taken.append(time.monotonic() - start)
        idle, spinning = time_taken
        assert idle < 0.2  # a sleeping process: quiet at once
        assert 0.2 < spinning < 2.0  # a spinning one: once its 0.4 s loop ends, not before
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    start = time.monotonic()
    latency.wait_idle(procs[0].pid, 0.005)  # a process gone by then: no wait, no traceback
    assert time.monotonic() - start < 0.2
