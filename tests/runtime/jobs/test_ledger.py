"""Shard ledger: atomic commits, resume only for the same job, damaged shards redone, one writer."""

import json

import pytest

from embedrt.errors import ConfigError
from embedrt.jobs.ledger import Ledger

IDENTITY = {
    "input": {"size": 10, "sha256": "a" * 64},
    "model": {"variant_sha256": "b" * 64},
    "options": {"shard_rows": 100},
}


def commit(ledger, index, data=b"x" * 10):
    return ledger.commit(index, 100, ".bin", lambda f: f.write(data))


def test_commit_then_resume_keeps_committed_shards(tmp_path):
    parts = tmp_path / "out.npy.parts"
    led = Ledger.open(parts, IDENTITY, resume=False)
    commit(led, 0)
    commit(led, 1)
    (parts / "shard-000002.bin.tmp").write_bytes(b"half")  # what a kill mid-write leaves
    led.close()
    stored = json.loads((parts / "ledger.json").read_text())
    assert [s["file"] for s in stored["shards"]] == ["shard-000000.bin", "shard-000001.bin"]

    led = Ledger.open(parts, IDENTITY, resume=True)
    assert led.done_rows == 200 and len(led.shard_paths()) == 2
    assert not (parts / "shard-000002.bin.tmp").exists()
    with pytest.raises(ConfigError, match="out of order"):
        commit(led, 3)
    led.remove()
    assert not parts.exists()


def test_existing_job_needs_resume(tmp_path):
    Ledger.open(tmp_path / "p", IDENTITY, resume=False).close()
    with pytest.raises(ConfigError, match="interrupted job; pass --resume"):
        Ledger.open(tmp_path / "p", IDENTITY, resume=False)


@pytest.mark.parametrize(
    "section,key,message",
    [
        ("input", "sha256", "the input changed"),
        ("model", "variant_sha256", "the model changed"),
        ("options", "shard_rows", "an option changed"),
    ],
)
def test_changed_identity_is_refused(tmp_path, section, key, message):
    Ledger.open(tmp_path / "p", IDENTITY, resume=False).close()
    changed = json.loads(json.dumps(IDENTITY))
    changed[section][key] = "c" * 64 if key.endswith("sha256") else 7
    with pytest.raises(ConfigError, match=f"cannot resume: {message}.* \\({section}.{key} was"):
        Ledger.open(tmp_path / "p", changed, resume=True)


def test_damaged_shard_and_later_ones_are_redone(tmp_path):
    led = Ledger.open(tmp_path / "p", IDENTITY, resume=False)
    for i in range(3):
        commit(led, i)
    led.close()
    (tmp_path / "p" / "shard-000001.bin").write_bytes(b"y" * 10)  # same size, other content
    led = Ledger.open(tmp_path / "p", IDENTITY, resume=True)
    assert [s.index for s in led.shards] == [0]
    assert not (tmp_path / "p" / "shard-000002.bin").exists()
    led.close()


def test_second_writer_is_refused(tmp_path):
    first = Ledger.open(tmp_path / "p", IDENTITY, resume=False)
    with pytest.raises(ConfigError, match="another job is writing"):
        Ledger.open(tmp_path / "p", IDENTITY, resume=True)
    first.close()
    Ledger.open(tmp_path / "p", IDENTITY, resume=True).close()
