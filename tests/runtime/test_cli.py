"""The `embedrt` command, run as a user runs it (a real subprocess)."""

import json
import subprocess
import sys

import pytest


def run(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "embedrt.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def test_info_json(tiny_artifact):
    info = json.loads(run("info", str(tiny_artifact), "--json").stdout)
    assert info["manifest"]["dim"] == 16
    assert info["loaded"]["device"] == "cpu"
    assert info["loaded"]["active_providers"][0] == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in info["loaded"]["available_providers"]


def test_info_text(tiny_copy):
    """A header, a table with a row per variant (refused ones too), why each refused, the choice."""
    path = tiny_copy / "embedrt.json"
    manifest = json.loads(path.read_text())
    manifest["variants"][0]["quality"] = {
        "parity_vs_sentence_transformers": {"max_abs_diff": 2e-7, "min_cosine": 0.99999994},
        "stsb_dev_spearman": 0.86716,
        "gate": "passed",
    }
    manifest["refused"] = {"int8": "batch variance 0.98 < 0.99999; figures: {'gate': 'refused'}"}
    manifest["prompts"] = {"query": "query: ", "document": ""}
    manifest["default_prompt_name"] = "query"
    manifest["source"]["architecture"] = "bert"
    path.write_text(json.dumps(manifest))
    out = run("info", str(tiny_copy)).stdout.splitlines()
    assert out[0] == f"artifact   {tiny_copy}"
    assert out[1] == "source     tiny-fixture"  # the fixture records no weights
    assert out[2] == (
        "model      bert: dim 16, max_seq_length 32, pooling mean, normalize true, "
        "similarity cosine, opset 17"
    )
    assert out[3:6] == ["prompts    default: 'query'", "  query: 'query: '", "  document: ''"]
    header = next(line for line in out if line.startswith("variant "))
    assert header.split() == "variant file size MB precision gate figures providers".split()
    size = f"{(tiny_copy / 'model.onnx').stat().st_size / 1e6:.1f}"
    top = out.index(header)
    assert out[top + 1].split() == (
        f"fp32 model.onnx {size} fp32 passed ST 0.9999999, STS-B 0.8672 CPU".split()
    )
    assert out[top + 2].split() == "int8 - - - refused - -".split()
    assert "  int8: batch variance 0.98 < 0.99999" in out
    assert "providers  available here: " in "\n".join(out)
    assert out[-2] == (
        "chosen     device cpu, precision fp32, variant fp32 (model.onnx), "
        "active: CPUExecutionProvider"
    )


def test_similarity_table(tiny_artifact):
    out = run(
        "similarity", str(tiny_artifact), "the man plays guitar", "a dog", "the man plays guitar"
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith(("the man", "a dog"))]
    assert len(rows) == 3
    first = [float(x) for x in rows[0].split()[-3:]]
    assert first[0] == pytest.approx(1.0, abs=1e-3) and first[2] == pytest.approx(1.0, abs=1e-3)


def test_errors_exit_2_with_message(tmp_path, tiny_artifact):
    res = run("info", str(tmp_path / "missing"), check=False)
    assert res.returncode == 3 and "does not exist" in res.stderr
    res = run("similarity", str(tiny_artifact), "--device", "cuda", check=False)
    assert res.returncode == 3 and "CUDAExecutionProvider" in res.stderr


def test_bench_grid(tiny_artifact, tmp_path):
    out = run(
        "bench",
        "-m",
        str(tiny_artifact),
        "--batch-sizes",
        "1,4",
        "--seq-lens",
        "8,16,64",
        "--runs",
        "3",
        "--json",
        str(tmp_path / "b.json"),
    ).stdout
    cells = json.loads((tmp_path / "b.json").read_text())["cells"]
    # 64 exceeds the tiny model's max_seq_length (32) and is skipped, not silently truncated
    assert [(c["batch_size"], c["seq_len"]) for c in cells] == [(1, 8), (4, 8), (1, 16), (4, 16)]
    assert all(c["p50_ms"] > 0 and c["p50_ms"] <= c["p99_ms"] for c in cells)
    assert cells[1]["tokens_per_s"] == pytest.approx(cells[1]["texts_per_s"] * 8, rel=1e-3)
    assert "CPUExecutionProvider" in out and "tokens/s" in out
    bad = run("bench", "-m", str(tiny_artifact), "--batch-sizes", "0", check=False)
    assert bad.returncode == 2 and "positive integers" in bad.stderr


def test_threads_beyond_the_cpus_are_refused_with_the_range(tiny_artifact):
    bad = run("similarity", str(tiny_artifact), "a dog", "--threads", "10000", check=False)
    assert bad.returncode == 2
    assert "threads must be an integer from 1 to" in bad.stderr and "got 10000" in bad.stderr


def test_streams_option_reaches_the_encoder_and_is_checked(tiny_artifact):
    info = json.loads(
        run("info", str(tiny_artifact), "--json", "--threads", "2", "--streams", "2").stdout
    )
    assert info["loaded"]["streams"] == 2
    info = json.loads(
        run("info", str(tiny_artifact), "--json", "--threads", "2", "--streams", "1").stdout
    )
    assert info["loaded"]["streams"] == 1
    bad = run("info", str(tiny_artifact), "--threads", "1", "--streams", "2", check=False)
    assert bad.returncode == 2 and "streams must be an integer from 1 to 1" in bad.stderr
