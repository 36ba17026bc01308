"""Reading an artifact's files exactly as the manifest hashed them.

Each file is opened once and hashed through that descriptor; what is used afterwards comes
through the same descriptor (verified_file, verified_bytes) or is the very bytes that were
hashed (verified_tables), so a file renamed, replaced or rewritten meanwhile is not what loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import ModelLoadError
from .manifest import FileEntry, Variant

_CHUNK = 1 << 20


def verified_bytes(directory: str | Path, entry: FileEntry | Variant) -> bytes:
    """A (small) manifest file's bytes, read through the descriptor that was hashed."""
    with verified_file(directory, entry) as path:
        return Path(path).read_bytes()


@contextlib.contextmanager
def verified_file(directory: str | Path, entry: FileEntry | Variant) -> Iterator[str]:
    """A path to a manifest file that reads exactly the bytes whose sha256 matched, for as long
    as the context lasts: the file is opened once, hashed through that descriptor, and handed
    on as /proc/self/fd/N (Linux), so a file renamed or replaced meanwhile is not what loads;
    one written in place is caught at exit (its size, mtime or ctime changed). Unlike reading
    the bytes into Python, this costs no second copy of a large model in memory."""
    path = Path(directory) / entry.file
    fd = _open(directory, entry)
    try:
        before = os.fstat(fd)
        digest = hashlib.sha256()
        with os.fdopen(os.dup(fd), "rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
        _check_sha256(entry, digest.hexdigest())
        proc = Path(f"/proc/self/fd/{fd}")
        yield str(proc) if proc.exists() else str(path)
        after = os.fstat(fd)
        if not proc.exists():  # loaded by path: it must still be the file that was hashed
            now = os.stat(path)
            if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
                raise ModelLoadError(
                    f"artifact file {entry.file!r} was replaced while it was loaded; load again"
                )
        # Writes change the size or mtime; a write hidden by resetting mtime still changes the
        # ctime, which also changes when the file is renamed away (then its link count does).
        hidden = after.st_ctime_ns != before.st_ctime_ns and after.st_nlink == before.st_nlink
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or hidden:
            raise ModelLoadError(
                f"artifact file {entry.file!r} changed while it was loaded; load again"
            )
    finally:
        os.close(fd)


def verified_tables(directory: str | Path, variant: Variant) -> dict[str, np.ndarray]:
    """The variant's token tables (name -> read-only array, the manifest's dtype and shape),
    read from its data file into memory in one pass that also hashes it: the arrays hold the
    bytes whose sha256 matched. {} for a variant without a data file."""
    if variant.data is None:
        return {}
    entry = variant.data
    fd = _open(directory, entry)
    try:
        size = os.fstat(fd).st_size
        end = max(t.offset + t.nbytes for t in variant.tables)
        if size != end:  # the export's file ends with its last table; checked before reading
            raise ModelLoadError(
                f"artifact file {entry.file!r} holds {size} bytes where its tables end at "
                f"{end}: the manifest does not match the file; re-export or re-copy the artifact"
            )
        buffer = np.empty(size, np.uint8)
        digest = hashlib.sha256()
        with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
            view = memoryview(buffer.data)
            done = 0
            while done < size:
                got = f.readinto(view[done : done + _CHUNK])
                if not got:
                    raise ModelLoadError(f"artifact file {entry.file!r} shrank while it was read")
                digest.update(view[done : done + got])
                done += got
        _check_sha256(entry, digest.hexdigest())
    finally:
        os.close(fd)
    buffer.flags.writeable = False
    return {
        t.name: buffer[t.offset : t.offset + t.nbytes].view(t.dtype).reshape(t.shape)
        for t in variant.tables
    }


def _open(directory: str | Path, entry: FileEntry | Variant) -> int:
    """A read descriptor on the entry's file, a regular one, or ModelLoadError naming it."""
    try:  # O_NONBLOCK: a FIFO in its place must not hang
        fd = os.open(Path(directory) / entry.file, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ModelLoadError(
            f"artifact file {entry.file!r} is missing from {str(directory)!r}"
        ) from None
    except OSError as e:
        raise ModelLoadError(f"artifact file {entry.file!r} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ModelLoadError(f"artifact file {entry.file!r} is not a regular file")
    return fd


def _check_sha256(entry: FileEntry | Variant, got: str) -> None:
    if got != entry.sha256:
        raise ModelLoadError(
            f"artifact file {entry.file!r} is corrupted: sha256 {got[:16]}... does not match "
            f"the manifest's {entry.sha256[:16]}...; re-export or re-copy the artifact"
        )
