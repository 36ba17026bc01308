"""The embed job end to end on the tiny model: formats in and out, order, bad rows, resume."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from fixtures.rows import make_rows, read_output, write

from embedrt import Encoder
from embedrt.errors import ConfigError, InputError
from embedrt.jobs import JobConfig, job_identity, run_job
from embedrt.jobs.ledger import Ledger
from embedrt.jobs.readers import InputSpec


def job(tiny_encoder, src, out, **kw):
    return run_job(src, out, tiny_encoder, JobConfig(progress="none", **kw))


@pytest.mark.parametrize("src", ["in.txt.gz", "in.jsonl", "in.csv.gz", "in.tsv", "in.parquet"])
@pytest.mark.parametrize("dst", ["out.npy", "out.parquet"])
def test_formats_in_and_out_keep_order(tmp_path, tiny_encoder, src, dst):
    rows = make_rows(300)
    path = write(tmp_path / src, rows, src.split(".")[1])
    id_field = None if src.startswith("in.txt") else "id"
    summary = job(tiny_encoder, path, tmp_path / dst, id_field=id_field, shard_rows=64)
    emb, ids, tokens = read_output(tmp_path / dst)
    texts = [r["text"] for r in rows]
    # batches differ from encode()'s (per shard), so the last bits may too; order must not
    np.testing.assert_allclose(emb, tiny_encoder.encode(texts), atol=1e-6)
    assert emb.dtype == np.float32 and summary.rows == summary.embedded == 300
    if dst == "out.parquet":
        assert ids == ([f"r{i}" for i in range(300)] if id_field else list(range(1, 301)))
        assert tokens == list(tiny_encoder.count_tokens(texts))
    assert not (tmp_path / f"{dst}.parts").exists()


def test_job_equals_encode_within_each_shard(tmp_path, tiny_encoder):
    rows = make_rows(100)
    path = write(tmp_path / "in.jsonl", rows, "jsonl")
    job(tiny_encoder, path, tmp_path / "out.npy", shard_rows=40)
    texts = [r["text"] for r in rows]
    expected = np.concatenate([tiny_encoder.encode(texts[i : i + 40]) for i in range(0, 100, 40)])
    assert np.load(tmp_path / "out.npy").tobytes() == expected.tobytes()


@pytest.mark.parametrize("dst", ["out.npy", "out.parquet"])
def test_empty_input_gives_empty_output(tmp_path, tiny_encoder, dst):
    (tmp_path / "in.txt").write_text("")
    summary = job(tiny_encoder, tmp_path / "in.txt", tmp_path / dst)
    emb, ids, _ = read_output(tmp_path / dst)
    assert emb.shape[-1] == 16 and len(emb) == 0 and summary.rows == 0


def test_very_long_lines(tmp_path, tiny_encoder):
    long = "guitar music " * 80_000  # 1 MB on one line, past csv's 128 KiB field limit
    path = write(tmp_path / "in.csv", [{"id": 1, "text": long}, {"id": 2, "text": "short"}], "csv")
    job(tiny_encoder, path, tmp_path / "out.npy")
    np.testing.assert_allclose(
        np.load(tmp_path / "out.npy"), tiny_encoder.encode([long, "short"]), atol=1e-6
    )


BAD = (
    b'{"text": "first fine"}\n{"body": "x"}\n{"text": 3}\n{"text": "caf\xe9"}\n\n'
    b'{"text": "last fine"}\n'
)


def test_bad_row_fails_naming_the_line_and_writes_nothing(tmp_path, tiny_encoder):
    (tmp_path / "in.jsonl").write_bytes(BAD)
    with pytest.raises(
        InputError, match=r"in.jsonl line 2: missing text field 'text'.*--on-error skip"
    ):
        job(tiny_encoder, tmp_path / "in.jsonl", tmp_path / "out.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_bad_rows_skipped_and_listed(tmp_path, tiny_encoder):
    (tmp_path / "in.jsonl").write_bytes(BAD)
    summary = job(tiny_encoder, tmp_path / "in.jsonl", tmp_path / "out.parquet", on_error="skip")
    emb, ids, _ = read_output(tmp_path / "out.parquet")
    assert ids == [1, 6] and summary.skipped == 4
    np.testing.assert_allclose(emb, tiny_encoder.encode(["first fine", "last fine"]), atol=1e-6)
    side = [
        json.loads(x) for x in (tmp_path / "out.parquet.skipped.jsonl").read_text().splitlines()
    ]
    assert [s["line"] for s in side] == [2, 3, 4, 5]
    assert [s["reason"].split(" ")[0] for s in side] == ["missing", "text", "invalid", "empty"]


@pytest.mark.parametrize("dst", ["out.npy", "out.parquet"])
def test_an_id_that_is_not_utf8_is_a_bad_row(tmp_path, tiny_encoder, dst):
    # Before the reader checked ids, the parquet writer died on it with a bare UnicodeEncodeError
    # and left OUTPUT.parts behind.
    (tmp_path / "in.jsonl").write_text(
        '{"id": "a", "text": "x"}\n{"id": "b\\ud800", "text": "y"}\n'
    )
    with pytest.raises(InputError, match=r"in.jsonl line 2: id field 'id' is invalid UTF-8"):
        job(tiny_encoder, tmp_path / "in.jsonl", tmp_path / dst, id_field="id")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    summary = job(
        tiny_encoder, tmp_path / "in.jsonl", tmp_path / dst, id_field="id", on_error="skip"
    )
    assert summary.rows == 1 and summary.skipped == 1
    side = (tmp_path / f"{dst}.skipped.jsonl").read_text()
    assert json.loads(side) == {
        "line": 2,
        "reason": "id field 'id' is invalid UTF-8 (a lone surrogate or undecodable bytes)",
    }


def test_existing_output_is_kept_unless_overwrite(tmp_path, tiny_encoder):
    path = write(tmp_path / "in.txt", make_rows(5), "txt")
    (tmp_path / "out.npy").write_bytes(b"precious")
    with pytest.raises(ConfigError, match="exists; pass --overwrite"):
        job(tiny_encoder, path, tmp_path / "out.npy")
    assert (tmp_path / "out.npy").read_bytes() == b"precious"
    job(tiny_encoder, path, tmp_path / "out.npy", overwrite=True)
    assert np.load(tmp_path / "out.npy").shape == (5, 16)


@pytest.mark.parametrize(
    ("src", "out"), [("in.parquet", "in.parquet"), ("in.txt", "in.txt"), ("in.jsonl", "link.npy")]
)
def test_an_output_that_is_the_input_is_refused_before_any_work(tmp_path, tiny_encoder, src, out):
    path = write(tmp_path / src, make_rows(20), src.split(".")[1])
    if out != src:  # another name for the same file
        (tmp_path / out).symlink_to(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="is the input file"):
        job(tiny_encoder, path, tmp_path / out, overwrite=True, format="npy")
    assert path.read_bytes() == before


def test_a_skipped_rows_file_that_is_the_input_is_refused(tmp_path, tiny_encoder):
    path = write(tmp_path / "in.jsonl", make_rows(20), "jsonl")
    with pytest.raises(ConfigError, match="skipped-rows file .* is the input file"):
        job(tiny_encoder, path, tmp_path / "out.npy", on_error="skip", skipped_path=path)


def test_a_skipped_file_that_is_the_output_or_an_input_inside_the_parts_is_refused(
    tmp_path, tiny_encoder
):
    path = write(tmp_path / "in.jsonl", make_rows(20), "jsonl")
    out = tmp_path / "out.npy"
    with pytest.raises(ConfigError, match="skipped-rows file and the output are both"):
        job(tiny_encoder, path, out, on_error="skip", skipped_path=out)
    parts = tmp_path / "out.npy.parts"
    parts.mkdir()
    inside = write(parts / "in.jsonl", make_rows(20), "jsonl")
    with pytest.raises(ConfigError, match="inside the job's parts directory"):
        job(tiny_encoder, inside, out)
    assert inside.exists()


def test_paths_that_cannot_be_written_are_refused_before_any_work(tmp_path, tiny_encoder):
    path = write(tmp_path / "in.jsonl", make_rows(20), "jsonl")
    with pytest.raises(ConfigError, match="skipped-rows file's folder .* does not exist"):
        job(
            tiny_encoder,
            path,
            tmp_path / "out.npy",
            on_error="skip",
            skipped_path=tmp_path / "missing" / "skipped.jsonl",
        )
    (tmp_path / "out.npy").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        job(tiny_encoder, path, tmp_path / "out.npy", overwrite=True)
    with pytest.raises(ConfigError, match="output's folder .* does not exist"):
        job(tiny_encoder, path, tmp_path / "nowhere" / "out.npy")
    assert not (tmp_path / "out.npy.parts").exists()


def test_identity_hashes_content_and_model(tmp_path, tiny_encoder):
    path = write(tmp_path / "in.txt", make_rows(5), "txt")
    ident = job_identity(InputSpec.of(path), tiny_encoder, JobConfig(), "npy")
    assert ident["model"]["variant_sha256"] == tiny_encoder.manifest.variants[0].sha256
    assert ident["model"]["tokenizer_sha256"] == tiny_encoder.manifest.tokenizer.sha256
    stat = path.stat()
    data = path.read_bytes()
    path.write_bytes(data.replace(b"the", b"THE", 1))  # same size, same mtime: content differs
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (
        job_identity(InputSpec.of(path), tiny_encoder, JobConfig(), "npy")["input"]
        != ident["input"]
    )


def test_identity_holds_the_encoders_batching_limits(tmp_path, tiny_encoder):
    # Another token budget cuts other batches, so other last bits: such a resume would mix bytes.
    path = write(tmp_path / "in.txt", make_rows(20), "txt")
    small = Encoder.load(tiny_encoder.info.path, device="cpu", batch_tokens=64)
    ident = job_identity(InputSpec.of(path), tiny_encoder, JobConfig(batch_size=8), "npy")
    assert ident["batching"] == {
        "max_tokens": tiny_encoder.runner.plan.max_tokens,
        "max_rows": 8,
        "pad_multiple": 1,
        "run_cost": tiny_encoder.runner.plan.run_cost,
        "max_cells": tiny_encoder.runner.plan.max_cells,  # it cuts long texts' batches too
    }
    assert (
        job_identity(InputSpec.of(path), small, JobConfig(batch_size=8), "npy")["batching"][
            "max_tokens"
        ]
        == 64
    )
    Ledger.open(tmp_path / "out.npy.parts", ident, resume=False).close()  # an interrupted run
    with pytest.raises(
        ConfigError, match=r"an option changed \(batching.max_tokens was 16384, now 64\)"
    ):
        job(small, path, tmp_path / "out.npy", batch_size=8, resume=True)
    summary = job(tiny_encoder, path, tmp_path / "out.npy", batch_size=8, resume=True)
    assert summary.rows == 20 and 0 < summary.padding_efficiency <= 1


def test_progress_log_lines_and_summary(tmp_path, tiny_encoder):
    path = write(tmp_path / "in.txt", make_rows(200), "txt")
    log = io.StringIO()
    summary = run_job(
        path,
        tmp_path / "out.npy",
        tiny_encoder,
        JobConfig(progress="auto", log_interval_s=0, shard_rows=50),
        stream=log,
    )
    lines = log.getvalue().splitlines()  # StringIO is not a terminal: log lines, not a bar
    assert (
        lines and lines[-1].startswith("embed: 200/200 rows (100.0%)") and "tokens/s" in lines[-1]
    )
    assert "\r" not in log.getvalue()
    text = summary.describe()
    assert "embedded 200 rows" in text and "rows/s" in text and "padding efficiency" in text
    assert 0 < summary.padding_efficiency <= 1 and summary.tokens == sum(
        tiny_encoder.count_tokens([r["text"] for r in make_rows(200)])
    )


def test_progress_bar_on_request(tmp_path, tiny_encoder):
    path = write(tmp_path / "in.txt", make_rows(100), "txt")
    bar = io.StringIO()
    run_job(path, tmp_path / "out.npy", tiny_encoder, JobConfig(progress="bar"), stream=bar)
    assert "100/100" in bar.getvalue() and "tok/s" in bar.getvalue()


def cli(*args):
    return [sys.executable, "-m", "embedrt.cli", "embed", *map(str, args)]


@pytest.mark.parametrize("dst", ["out.npy", "out.parquet"])
def test_kill_9_then_resume_is_byte_identical(tmp_path, tiny_encoder, dst):
    src = write(tmp_path / "in.jsonl", make_rows(6000), "jsonl")
    opts = ["--id-field", "id", "--shard-rows", "100", "--progress", "none", "--device", "cpu"]
    reference = tmp_path / f"ref{dst[3:]}"
    run_job(src, reference, tiny_encoder, JobConfig(id_field="id", shard_rows=100, progress="none"))

    out = tmp_path / dst
    ledger = tmp_path / f"{dst}.parts" / "ledger.json"
    proc = subprocess.Popen(
        cli(src, "-m", tiny_encoder.info.path, "-o", out, *opts), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:  # wait for a few committed shards
        try:
            if len(json.loads(ledger.read_text())["shards"]) >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    done = len(json.loads(ledger.read_text())["shards"])
    assert 3 <= done < 60 and not out.exists()  # killed mid-run, nothing final yet

    again = subprocess.run(
        cli(src, "-m", tiny_encoder.info.path, "-o", out, *opts),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "pass --resume" in again.stderr

    original = src.read_bytes()
    src.write_bytes(original.replace(b'"r7"', b'"r8"', 1))  # same size, one id changed
    changed = subprocess.run(
        cli(src, "-m", tiny_encoder.info.path, "-o", out, "--resume", *opts),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert changed.returncode == 2 and "the input changed" in changed.stderr

    src.write_bytes(original)
    resumed = subprocess.run(
        cli(src, "-m", tiny_encoder.info.path, "-o", out, "--resume", *opts),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done * 100:,} resumed" in resumed.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert not (tmp_path / f"{dst}.parts").exists()


def test_cli_bad_row_exit_2(tmp_path, tiny_encoder):
    (tmp_path / "in.jsonl").write_bytes(BAD)
    res = subprocess.run(
        cli(tmp_path / "in.jsonl", "-m", tiny_encoder.info.path, "-o", tmp_path / "out.npy"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "line 2: missing text field" in res.stderr
    assert not (tmp_path / "out.npy").exists()


def test_a_full_disk_is_a_one_line_error_and_resume_finishes_byte_identical(tmp_path, tiny_encoder):
    # RLIMIT_FSIZE makes every write past 40 kB fail, as a full disk does: the shards (32 kB
    # each) are written, the 192 kB output cannot be. Python ignores SIGXFSZ, so the write
    # raises OSError, as it would with ENOSPC.
    import resource

    src = write(tmp_path / "in.jsonl", make_rows(3000), "jsonl")
    clean = tmp_path / "clean.npy"
    job(tiny_encoder, src, clean, shard_rows=500)

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    out = tmp_path / "out.npy"
    args = cli(
        src, "-m", tiny_encoder.info.path, "-o", out, "--shard-rows", "500", "--progress", "none"
    )
    full = subprocess.run(args, capture_output=True, text=True, timeout=120, preexec_fn=small_disk)
    assert full.returncode == 4, full.stderr
    assert "Traceback" not in full.stderr and len(full.stderr.strip().splitlines()) == 1
    assert "committed shards are kept in" in full.stderr and "--resume" in full.stderr
    assert not out.exists()
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == clean.read_bytes()


LEAN = """
import io, sys
from embedrt import Encoder
from embedrt.jobs import JobConfig, run_job
run_job(sys.argv[2], sys.argv[3], Encoder.load(sys.argv[1], device="cpu"), JobConfig(progress="log"),
        stream=io.StringIO())
print(sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "onnx",
      "sentence_transformers", "pyarrow", "tqdm"}))
"""


def test_text_to_npy_job_needs_only_the_lean_runtime(tmp_path, tiny_artifact):
    src = write(tmp_path / "in.jsonl.gz", make_rows(50), "jsonl")
    res = subprocess.run(
        [sys.executable, "-c", LEAN, str(tiny_artifact), str(src), str(tmp_path / "o.npy")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"  # no heavy stack; pyarrow and tqdm only where needed
