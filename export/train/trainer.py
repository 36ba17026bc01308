"""embedrt train: check label orientation, evaluate, fine-tune, evaluate, save with a card.

    from embedrt.export.train.pairs import read_pairs
    from embedrt.export.train.trainer import train_model
    report = train_model(read_pairs("pairs.jsonl"), "models/my-ft")

The output is a sentence-transformers folder that `embedrt export` takes as it is, plus
README.md (the card) and training.json (the same record for machines). A run whose key (data,
label reading, recipe, base weights, eval sets, versions) matches the training.json already in
`out` is skipped: `make run` retrains only when something changed. The folder is built next to
`out` and moved into place at the end, so a failed run leaves the previous model intact.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedrt.errors import ConfigError, missing_extra

for _module in ("datasets", "accelerate", "scipy"):
    if importlib.util.find_spec(_module) is None:
        raise missing_extra(_module, "train")

from ..output import check_replaceable, replacing, tool_versions  # noqa: E402
from ..source import read_source  # noqa: E402
from .evaluation import EvalSet, evaluate, snli_eval_set, stsb_eval_set  # noqa: E402
from .model_card import render_card  # noqa: E402
from .orientation import LabelOrientationError, explain, judge_orientation, pair_cosines  # noqa: E402
from .pairs import TrainingPairs, map_labels, read_pairs  # noqa: E402
from .recipe import Recipe, train_pairs  # noqa: E402
from .snli import snli_pairs  # noqa: E402

RECORD = "training.json"
LABEL_MODES = ("auto", "similarity", "distance")
_VERSIONS = ("embedrt", "torch", "transformers", "sentence-transformers", "datasets", "accelerate")


@dataclass(frozen=True)
class TrainReport:
    """The training record (as written to training.json) and whether this run reused it."""

    out: Path
    record: dict[str, Any]
    skipped: bool


def training_data(
    data: str,
    cache_dir: str | Path,
    *,
    pairs: int = 1000,
    seed: int = 42,
    snli_labels: str = "meaning",
    heldout: int = 1000,
) -> tuple[TrainingPairs, list[EvalSet]]:
    """The pairs to train on and the sets to evaluate on, for `--data PATH` or `--data snli`.

    A file is used whole; "snli" samples `pairs` rows of the train split by `seed` (labels by
    meaning unless snli_labels="class-id", the card's mistake) and adds `heldout` test pairs
    scored the card's way. STS-B dev is evaluated in both cases.
    """
    evals = [stsb_eval_set("dev")]
    if data != "snli":
        return read_pairs(data), evals
    if heldout > 0:
        evals.append(snli_eval_set(cache_dir, heldout, seed))
    return snli_pairs("train", pairs, seed, snli_labels, cache_dir), evals


def train_model(
    pairs: TrainingPairs,
    out: str | Path,
    recipe: Recipe | None = None,
    *,
    labels: str = "auto",
    eval_sets: Sequence[EvalSet] | None = None,
    device: str = "cpu",
    force: bool = False,
    command: str = "",
    log: Callable[[str], None] = print,
) -> TrainReport:
    """Fine-tune recipe.base on `pairs` into the folder `out`.

    labels: "auto" reads labels as similarity and raises LabelOrientationError when the base
    model's cosine clearly disagrees with them; "similarity" trains on them as given;
    "distance" trains on 1 - label. eval_sets default to STS-B dev.
    """
    recipe = recipe or Recipe()
    if labels not in LABEL_MODES:
        raise ConfigError(f"labels {labels!r} is not one of {', '.join(LABEL_MODES)}")
    out = Path(out)
    check_replaceable(
        out,
        RECORD,
        f"{out} exists and was not written by embedrt train (no {RECORD}); "
        "refusing to overwrite it: choose another --out",
    )
    pairs = map_labels(pairs, "distance" if labels == "distance" else "similarity")
    eval_sets = list(eval_sets) if eval_sets is not None else [stsb_eval_set("dev")]
    source = read_source(recipe.base)
    key = _key(pairs, labels, recipe, source.weights_sha256, eval_sets, device)
    previous = _read_record(out)
    if previous and previous.get("key") == key and not force:
        log(
            f"{out} is up to date (key {key[:12]}): same data, labels, recipe, base and versions; "
            "--force retrains"
        )
        return TrainReport(out, previous, skipped=True)

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source.path), device=device)
    labels_arr = np.asarray(pairs.labels)
    cos = pair_cosines(model, pairs.sentence_0, pairs.sentence_1)
    orientation = judge_orientation(cos, labels_arr)
    log(
        f"label orientation: Spearman {orientation.spearman:+.3f} of {source.name}'s cosine vs "
        f"labels on {len(pairs)} training pairs -> {orientation.verdict}"
    )
    if orientation.verdict == "distance":
        if labels == "auto":
            raise LabelOrientationError(explain(orientation, source.name))
        log(f"warning: labels still look inverted; training anyway as told (--labels {labels})")
    mse_before = float(np.mean((cos - labels_arr) ** 2))

    before = _evaluate_all(model, eval_sets, "before", log)
    log(
        f"training: {len(pairs)} pairs, batch {recipe.batch_size}, {recipe.epochs} epoch(s), "
        f"lr {recipe.learning_rate}, seed {recipe.seed}"
    )
    train_log = train_pairs(model, pairs, recipe, device)
    log(f"trained {train_log.steps} steps in {train_log.seconds:.1f} s")
    mse_after = float(
        np.mean((pair_cosines(model, pairs.sentence_0, pairs.sentence_1) - labels_arr) ** 2)
    )
    log(f"training-set loss (MSE): {mse_before:.4f} -> {mse_after:.4f}")
    after = _evaluate_all(model, eval_sets, "after", log)

    import torch

    record = {
        "key": key,
        "base": {"name": source.name, "weights_sha256": source.weights_sha256},
        "recipe": recipe.as_dict(),
        "data": pairs.provenance,
        "labels_read_as": pairs.provenance.get("labels_read_as"),
        "label_mode": labels,
        "orientation": orientation.as_dict(),
        "metrics": {
            "before": before,
            "after": after,
            "train_mse": {"before": round(mse_before, 6), "after": round(mse_after, 6)},
            "notes": {s.name: s.note for s in eval_sets if s.note},
        },
        "training": {
            "steps": train_log.steps,
            "seconds": round(train_log.seconds, 2),
            "losses": [round(x, 6) for x in train_log.losses],
        },
        "device": device,
        "threads": torch.get_num_threads(),
        "versions": _versions(),
        "command": command,
    }
    _save(model, record, out)
    log(f"wrote {out} (sentence-transformers folder; card in {out / 'README.md'})")
    return TrainReport(out, record, skipped=False)


def _evaluate_all(
    model: Any, sets: Sequence[EvalSet], when: str, log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    results = {}
    for s in sets:
        c = evaluate(model, s)
        log(
            f"{when:6} {s.name}: Spearman {c.spearman:.4f}, Pearson {c.pearson:.4f} ({c.pairs} pairs)"
        )
        results[s.name] = c.as_dict()
    return results


def _key(
    pairs: TrainingPairs,
    labels: str,
    recipe: Recipe,
    weights_sha256: str,
    eval_sets: Sequence[EvalSet],
    device: str,
) -> str:
    """sha256 of everything that decides the output: the pairs themselves, not just their path."""
    h = hashlib.sha256()
    h.update(json.dumps([pairs.sentence_0, pairs.sentence_1, pairs.labels]).encode())
    for s in eval_sets:
        h.update(json.dumps([s.name, s.first, s.second, s.scores]).encode())
    h.update(
        json.dumps(
            [labels, recipe.as_dict(), weights_sha256, device, _versions()], sort_keys=True
        ).encode()
    )
    return h.hexdigest()


def _versions() -> dict[str, str]:
    return {"python": platform.python_version()} | tool_versions(_VERSIONS, "not installed")


def _read_record(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _save(model: Any, record: dict[str, Any], out: Path) -> None:
    """Model + card + record into a sibling folder, then swapped into place."""
    with replacing(out) as tmp:
        # sentence-transformers' own card would need the hub for some fields; ours is below.
        model.save(str(tmp), create_model_card=False)
        (tmp / "README.md").write_text(render_card(record), encoding="utf-8")
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
