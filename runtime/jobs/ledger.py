"""The shard ledger of a batch job: which fixed row ranges are done, and what made them.

A job writing OUTPUT works in OUTPUT.parts/: shard-000000.npy, shard-000001.npy, ... each one
written to a temporary file, fsynced and renamed into place, then recorded in ledger.json
(itself rewritten by temporary file + rename). A kill at any instant leaves a ledger naming only
complete shards. The ledger also holds the job's identity: the input's size and sha256 (of its
content, streamed: size + mtime would miss an edit in place), the model's variant and tokenizer
sha256, device and precision, and the options that decide the output bytes. Resuming with any of
these changed is refused with what changed, since the output could no longer equal an
uninterrupted run. A lock file keeps two jobs from writing the same directory at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..manifest import sha256_file

LEDGER = "ledger.json"
LOCK = ".lock"
VERSION = 1


@dataclass(frozen=True)
class Shard:
    """A committed shard: rows [index * shard_rows, index * shard_rows + rows) of the output."""

    index: int
    file: str
    rows: int
    size: int
    sha256: str


class Ledger:
    """The parts directory of one job, locked while open. Create with Ledger.open()."""

    def __init__(self, directory: Path, identity: dict[str, Any], shards: list[Shard], lock: int):
        self.directory = directory
        self.identity = identity
        self.shards = shards
        self._lock = lock

    @classmethod
    def open(cls, directory: str | Path, identity: dict[str, Any], *, resume: bool) -> Ledger:
        """Start a job in directory, or continue the one there (resume=True) if its identity matches."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        lock = _lock(directory)
        try:
            identity = json.loads(json.dumps(identity))  # canonical: tuples -> lists, as stored
            shards: list[Shard] = []
            path = directory / LEDGER
            if path.is_file():
                if not resume:
                    raise ConfigError(
                        f"{directory} holds an interrupted job; pass --resume to continue it, "
                        "or delete that directory to start over"
                    )
                shards = _resumable(directory, path, identity)
            for stray in directory.iterdir():  # half-written shards of the killed run
                if stray.name.endswith(".tmp") or (
                    stray.name.startswith("shard-") and stray.name not in {s.file for s in shards}
                ):
                    stray.unlink()
            ledger = cls(directory, identity, shards, lock)
            ledger._save()
            return ledger
        except BaseException:
            os.close(lock)
            raise

    @property
    def done_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    def shard_paths(self) -> list[Path]:
        return [self.directory / s.file for s in self.shards]

    def commit(
        self, index: int, rows: int, suffix: str, write: Callable[[IO[bytes]], None]
    ) -> Shard:
        """Write shard `index` with write(file) atomically, then record it in the ledger."""
        if index != len(self.shards):
            raise ConfigError(f"shard {index} committed out of order (next is {len(self.shards)})")
        name = f"shard-{index:06d}{suffix}"
        final = self.directory / name
        tmp = final.with_name(name + ".tmp")
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(
                f.fileno()
            )  # the rename below must never expose a file whose data is not on disk
        shard = Shard(index, name, rows, tmp.stat().st_size, sha256_file(tmp))
        os.replace(tmp, final)
        self.shards.append(shard)
        self._save()
        return shard

    def close(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def remove(self) -> None:
        """Delete the parts directory (after the output is in place, or a run that wrote nothing)."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _save(self) -> None:
        data = {
            "version": VERSION,
            "identity": self.identity,
            "shards": [asdict(s) for s in self.shards],
        }
        write_atomic(self.directory / LEDGER, (json.dumps(data, indent=1) + "\n").encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace path with data: temporary file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sync_dir(path.parent)


def sync_dir(directory: Path) -> None:
    """Make renames in directory durable (a rename lives in the directory's own metadata)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(directory: Path) -> int:
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel even on kill -9
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"another job is writing {directory}; wait for it or stop it first"
        ) from None
    return fd


def _resumable(directory: Path, path: Path, identity: dict[str, Any]) -> list[Shard]:
    """The committed shards of the ledger at path, after checking the job is the same one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        old = data["identity"]
        shards = [Shard(**s) for s in data["shards"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is unreadable ({e}); delete {directory} to start over") from None
    if data.get("version") != VERSION:
        raise ConfigError(
            f"{path} was written by another embedrt version; delete {directory} to start over"
        )
    changed = _differences(old, identity)
    if changed:
        raise ConfigError(
            f"cannot resume: {'; '.join(changed)}. The output would not match an uninterrupted "
            f"run: rerun with the original input, model and options, or delete {directory} to start over"
        )
    good: list[Shard] = []
    for s in shards:  # a shard that is missing or altered ends what can be trusted
        p = directory / s.file
        if not p.is_file() or p.stat().st_size != s.size or sha256_file(p) != s.sha256:
            break
        good.append(s)
    return good


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    what = {
        "input": "the input changed since the interrupted run",
        "model": "the model changed since the interrupted run",
    }
    out = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                label = what.get(section, "an option changed")
                out.append(
                    f"{label} ({section}.{key} was {_short(a.get(key))}, now {_short(b.get(key))})"
                )
    return out


def _short(value: Any) -> str:
    s = json.dumps(value)
    return s[:19] + '..."' if len(s) > 24 else s
