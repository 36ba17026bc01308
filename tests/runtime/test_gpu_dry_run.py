"""bench/gpu.py's dry run on the tiny artifact: the GPU proof's code path runs on the CPU.

The GPU machine only executes that script, so a broken line must show up here, not there. The
tiny artifact has no fp16 or opt variant and no sentence-transformers folder: the proof skips
those, says so, and still checks parity, placement, the sweep and the engine-cache processes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


def test_gpu_proof_dry_run_on_tiny_artifact(tiny_artifact, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    texts = [
        "the man plays guitar",
        "a woman cooks food in the kitchen",
        "",
        "quick brown fox " * 20,
    ]
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts * 3))
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out)}
    run = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "dry-run",
            "--artifact",
            str(tiny_artifact),
            "--corpus",
            str(corpus),
            "--work",
            str(tmp_path / "work"),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "gpu_proof.json").read_text())
    assert report["dry_run"] is True
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == ["embedrt fp32 cpu"]
    row = rows["embedrt fp32 cpu"]
    assert row["active_providers"] == ["CPUExecutionProvider"]
    assert set(row["placement"]) == {"CPUExecutionProvider"}
    assert row["parity_vs_cpu_fp32"]["min_cosine"] >= 0.9999
    assert set(row["throughput"]) == {"1", "8", "32"}
    assert row["latency_single_ms"]["p50"] > 0
    skipped = {s["what"]: s["why"] for s in report["skipped"]}
    assert "no 'fp16' variant" in skipped["embedrt fp16 cpu"]
    assert "TensorrtExecutionProvider" in skipped["embedrt fp16 tensorrt"]
    assert "without --st-model" in skipped["torch fp32/fp16"]
    first, second = report["tensorrt"]["processes"]
    assert first["active_providers"] == second["active_providers"] == ["CPUExecutionProvider"]
    assert all(g["pass"] for g in report["gates"])
    table = (out / "gpu_proof.txt").read_text()
    assert "DRY RUN" in table and "embedrt fp32 cpu" in table
    assert run.stdout.rstrip().endswith(
        table.rstrip().splitlines()[-1]
    )  # the table is printed last


def _row(name, device, precision, providers, placement, cos=0.99999, tput=(1000.0,), p50=0.8):
    return {
        "name": name,
        "engine": name.split()[0].replace("torch", "sentence-transformers"),
        "device": device,
        "precision": precision,
        "active_providers": providers,
        "placement": placement,
        "parity_vs_cpu_fp32": {"min_cosine": cos},
        "throughput": {"32": {"texts_per_s": tput[0]}},
        "latency_single_ms": {"p50": p50, "p99": 2 * p50},
    }


def test_gpu_checks_gate_placement_parity_and_targets():
    """The gates that only a GPU run reaches, on made-up rows (a bug here would cost device time)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    good = {
        "CUDAExecutionProvider": {"nodes": 40, "ops": {"Attention": 6}},
        "CPUExecutionProvider": {"nodes": 3, "ops": {"Shape": 2, "Gather": 1}},
    }
    bad = {
        "CUDAExecutionProvider": {"nodes": 10, "ops": {"Add": 10}},
        "CPUExecutionProvider": {"nodes": 30, "ops": {"MatMul": 24, "Softmax": 6}},
    }
    rows = [
        _row("embedrt fp32 cuda", "cuda", "fp32", cuda, good),
        _row("embedrt fp16 cuda", "cuda", "fp16", cuda, bad, cos=0.9990, tput=(3000.0,), p50=0.7),
        _row("torch fp16 cuda", "cuda", "fp16", [], None, tput=(1000.0,), p50=4.0),
    ]
    gates, targets = gpu.checks(rows, "cuda")
    verdict = {g["what"]: g["pass"] for g in gates}
    assert verdict["embedrt fp32 cuda min cosine vs CPU fp32"] is True
    assert verdict["embedrt fp16 cuda min cosine vs CPU fp32"] is False  # 0.9990 < 0.9995
    assert verdict["torch fp16 cuda min cosine vs CPU fp32"] is True
    assert verdict["embedrt fp32 cuda nodes on CUDAExecutionProvider, heavy ops on the CPU"] is True
    assert (
        verdict["embedrt fp16 cuda nodes on CUDAExecutionProvider, heavy ops on the CPU"] is False
    )
    assert targets["fp16_speedup_vs_torch_fp16_bs32"] == {"got": 3.0, "target": 2.0, "met": True}
    assert targets["fp16_single_p50_ms"]["met"] is True
    text = gpu.table(
        {
            "rows": rows,
            "config": {"batch_sizes": [32]},
            "dry_run": False,
            "skipped": [],
            "environment": {
                "gpu": "H100",
                "onnxruntime_package": "onnxruntime-gpu",
                "onnxruntime": "1.31.1",
            },
            "gates": gates,
            "targets": targets,
        }
    )
    assert "FAIL" in text and "MET" in text and "embedrt fp16 cuda" in text
