"""Output folders of export and train: what made them (tool versions), and their safe replacement.

Both commands write a folder the user names. A folder that is there and not empty is replaced
only when the command's own record is in it (embedrt.json, training.json); anything else is
refused, never overwritten. The new folder is built in a hidden sibling and swapped into place
only once it is complete, so a failed run leaves the previous folder as it was.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from embedrt.errors import ConfigError


def tool_versions(names: Iterable[str], absent: str | None = None) -> dict[str, str]:
    """{distribution: installed version} in the order given; one not installed gets `absent`,
    or is left out when absent is None."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if absent is not None:
                versions[name] = absent
    return versions


def check_replaceable(out: Path, record: str, refusal: str) -> None:
    """ConfigError(refusal) when `out` is a file, or a non-empty folder without its `record` file
    (a folder this command did not write)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / record).is_file())):
        raise ConfigError(refusal)


@contextmanager
def replacing(out: Path) -> Iterator[Path]:
    """A fresh hidden sibling of `out` to build in; when the with block ends without an error
    it takes out's place, and when it fails it is deleted and `out` is left untouched.

        with replacing(Path("artifacts/m")) as tmp:
            (tmp / "model.onnx").write_bytes(...)
    """
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
