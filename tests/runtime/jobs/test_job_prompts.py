"""The batch job with the model's prompts: --prompt-name, the default prompt, and a resume that
must not mix vectors of two prompts."""

import json
import subprocess
import sys

import numpy as np
import pytest
from fixtures.rows import make_rows, write

from embedrt import Encoder
from embedrt.errors import ConfigError
from embedrt.jobs import JobConfig, job_identity, run_job
from embedrt.jobs.readers import InputSpec

PROMPTS = {"query": "quick brown ", "document": "someone is "}


@pytest.fixture
def prompted(tiny_copy):
    path = tiny_copy / "embedrt.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(prompts=PROMPTS, default_prompt_name="document")
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return Encoder.load(tiny_copy, device="cpu")


@pytest.mark.parametrize("prompt_name", [None, "query"])
def test_job_applies_the_prompt_as_encode_does(tmp_path, prompted, prompt_name):
    rows = make_rows(50)
    src = write(tmp_path / "in.jsonl", rows, "jsonl")
    config = JobConfig(progress="none", prompt_name=prompt_name)
    run_job(src, tmp_path / "out.npy", prompted, config)
    texts = [r["text"] for r in rows]
    out = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(out, prompted.encode(texts, prompt_name=prompt_name), atol=1e-6)
    assert not np.allclose(out, prompted.encode(texts, prompt=""), atol=1e-3)


def test_an_unknown_prompt_name_fails_before_any_work(tmp_path, prompted):
    src = write(tmp_path / "in.jsonl", make_rows(5), "jsonl")
    with pytest.raises(ConfigError, match="'passage' is not one of the model's prompts"):
        run_job(src, tmp_path / "out.npy", prompted, JobConfig(prompt_name="passage"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact", "in.jsonl"]


def test_the_prompt_is_part_of_the_jobs_identity(tmp_path, prompted):
    """A resume with another prompt would mix two kinds of vectors in one output."""
    src = write(tmp_path / "in.txt", make_rows(5), "txt")
    spec = InputSpec.of(src)
    ident = {
        name: job_identity(spec, prompted, JobConfig(prompt_name=name), "npy")["options"]["prompt"]
        for name in (None, "query", "document")
    }
    assert ident == {None: "someone is ", "query": "quick brown ", "document": "someone is "}


def test_without_a_prompt_the_identity_is_as_before_prompts(tmp_path, tiny_encoder):
    """No "prompt" key at all: a ledger written before prompts existed still resumes."""
    src = write(tmp_path / "in.txt", make_rows(5), "txt")
    options = job_identity(InputSpec.of(src), tiny_encoder, JobConfig(), "npy")["options"]
    assert "prompt" not in options and options["shard_rows"] == JobConfig().shard_rows


def test_cli_prompt_name(tmp_path, prompted):
    src = write(tmp_path / "in.txt", make_rows(20), "txt")
    out = tmp_path / "out.npy"
    cmd = [sys.executable, "-m", "embedrt.cli", "embed", str(src), "-m", prompted.info.path]
    done = subprocess.run(
        [*cmd, "-o", str(out), "--prompt-name", "query", "--progress", "none"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    texts = [r["text"] for r in make_rows(20)]
    np.testing.assert_allclose(np.load(out), prompted.encode(texts, prompt_name="query"), atol=1e-6)
    bad = subprocess.run(
        [*cmd, "-o", str(tmp_path / "bad.npy"), "--prompt-name", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "'nope' is not one of the model's prompts" in bad.stderr
