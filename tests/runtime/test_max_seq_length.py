"""A max_seq_length shorter than the artifact's, chosen at load (`model.max_seq_length = N` in
sentence-transformers): Encoder.load, the batch job's identity, the CLI and the server."""

import subprocess
import sys

import httpx
import numpy as np
import pytest
from fixtures.rows import make_rows, write
from fixtures.server_process import ServerProcess, post
from tokenizers import Tokenizer

from embedrt import Encoder
from embedrt.errors import ConfigError
from embedrt.jobs import JobConfig, job_identity, run_job
from embedrt.jobs.ledger import Ledger
from embedrt.jobs.readers import InputSpec

LONG = "the cat sat on the mat " * 20  # past the tiny model's 32 tokens
TEXTS = [LONG, "a dog", "the man plays guitar while the dog sleeps on the warm mat"]


@pytest.fixture(scope="module")
def short(tiny_artifact):
    return Encoder.load(tiny_artifact, device="cpu", max_seq_length=8)


def test_texts_are_cut_where_the_tokenizer_truncating_there_cuts(
    tiny_artifact, tiny_encoder, short
):
    ref = Tokenizer.from_file(str(tiny_artifact / "tokenizer.json"))
    ref.no_padding()
    ref.enable_truncation(max_length=8)
    rows = [e.ids for e in ref.encode_batch(TEXTS)]
    assert short.tokenize(TEXTS) == rows
    assert short.max_seq_length == short.info.max_seq_length == 8
    assert tiny_encoder.max_seq_length == tiny_encoder.manifest.max_seq_length == 32
    # the same graph on those rows: the artifact's own encoder given the cut rows
    np.testing.assert_allclose(short.encode(TEXTS), tiny_encoder.encode_tokens(rows), atol=1e-6)
    assert not np.allclose(short.encode(LONG), tiny_encoder.encode(LONG), atol=1e-3)
    assert short.count_tokens(TEXTS).tolist() == [8, 4, 8]


@pytest.mark.parametrize("bad", [1, 0, -3, 33, 8.0, "8", True])
def test_a_length_the_artifact_was_not_checked_for_is_refused(tiny_artifact, bad):
    with pytest.raises(ConfigError, match=r"max_seq_length must be an integer from 2 to 32"):
        Encoder.load(tiny_artifact, device="cpu", max_seq_length=bad)


def test_the_length_is_part_of_a_jobs_identity(tmp_path, tiny_encoder, short):
    # A resume at another length would mix vectors of two truncations in one output.
    src = write(tmp_path / "in.jsonl", make_rows(40), "jsonl")
    plain = job_identity(InputSpec.of(src), tiny_encoder, JobConfig(), "npy")
    # as before the option: ledgers written then still resume
    assert "max_seq_length" not in plain["options"] and "max_seq_length" not in plain["model"]
    ident = job_identity(InputSpec.of(src), short, JobConfig(), "npy")
    assert ident["options"]["max_seq_length"] == 8
    Ledger.open(tmp_path / "out.npy.parts", ident, resume=False).close()  # an interrupted run
    with pytest.raises(ConfigError, match=r"an option changed \(options.max_seq_length was 8"):
        run_job(src, tmp_path / "out.npy", tiny_encoder, JobConfig(progress="none", resume=True))
    run_job(src, tmp_path / "out.npy", short, JobConfig(progress="none", resume=True))
    texts = [r["text"] for r in make_rows(40)]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), short.encode(texts), atol=1e-6)


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "embedrt.cli", *map(str, args)], capture_output=True, text=True
    )


def test_the_cli_takes_it_and_refuses_a_longer_one(tmp_path, tiny_artifact, short):
    src = write(tmp_path / "in.txt", make_rows(30), "txt")
    out = tmp_path / "out.npy"
    args = ("-o", out, "--max-seq-length", 8, "--progress", "none")
    done = cli("embed", src, "-m", tiny_artifact, *args)
    assert done.returncode == 0, done.stderr
    texts = [r["text"] for r in make_rows(30)]
    np.testing.assert_allclose(np.load(out), short.encode(texts), atol=1e-6)
    bad = cli("similarity", tiny_artifact, "a", "b", "--max-seq-length", 64)
    assert bad.returncode == 2 and "max_seq_length must be an integer from 2 to 32" in bad.stderr


def test_info_and_bench_report_the_length_in_effect(tiny_artifact):
    info = cli("info", tiny_artifact, "--max-seq-length", 8)
    assert info.returncode == 0, info.stderr
    chosen = [line for line in info.stdout.splitlines() if line.startswith("chosen")]
    assert chosen[0].endswith(", max_seq_length 8")
    plain = cli("info", tiny_artifact).stdout.splitlines()
    assert "max_seq_length" not in [line for line in plain if line.startswith("chosen")][0]
    common = ("bench", "-m", tiny_artifact, "--max-seq-length", 8, "--batch-sizes", 1, "--runs", 1)
    none_left = cli(*common, "--seq-lens", 16)
    assert none_left.returncode == 2 and "every --seq-lens is past max_seq_length 8" in (
        none_left.stderr
    )
    some = cli(*common, "--seq-lens", "4,16")
    assert some.returncode == 0, some.stderr
    assert "skipped --seq-lens past max_seq_length 8: [16]" in some.stdout


def test_the_server_reads_and_reports_the_shorter_length(tmp_path, tiny_artifact, short):
    args = ("--threads", "1", "--max-seq-length", "8", "--auto-truncate", "false")
    srv = ServerProcess(tiny_artifact, tmp_path, *args)
    try:
        info = httpx.get(f"{srv.url}/info", timeout=30).json()
        assert info["max_input_length"] == 8
        res = post(srv.url, "/embed", {"inputs": TEXTS, "truncate": True})
        assert res.status_code == 200, res.text
        np.testing.assert_allclose(np.array(res.json(), np.float32), short.encode(TEXTS), atol=1e-6)
        refused = post(srv.url, "/embed", {"inputs": [TEXTS[2]]})  # 14 tokens, 8 allowed
        assert refused.status_code == 422 and "reads at most 8" in refused.text
        assert post(srv.url, "/embed", {"inputs": ["a dog"]}).status_code == 200
    finally:
        assert srv.stop() == 0
