"""The trained model's card: README.md in the model folder, written from the training record.

Everything a reader needs to trust or reproduce the numbers: the exact recipe, where the data
came from (with hashes), how labels were read and whether they pointed the right way, the
metrics before and after, and the versions that produced them. The same facts sit in
training.json for machines; this file renders them for people.
"""

from __future__ import annotations

import json
from typing import Any


def render_card(record: dict[str, Any]) -> str:
    """README.md text for a training record (the dict written to training.json)."""
    r, data, o = record["recipe"], record["data"], record["orientation"]
    m, t = record["metrics"], record["training"]
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: sentence-similarity",
        "tags: [sentence-transformers, sentence-similarity, embedrt]",
        "---",
        "",
        f"# Fine-tune of {record['base']['name']} (embedrt train)",
        "",
        "A sentence-transformers folder, exportable as is with `embedrt export THIS_FOLDER OUT`.",
        "",
        "## Recipe",
        "",
        f"- base: `{record['base']['name']}`, weights sha256 `{record['base']['weights_sha256']}`",
        f"- loss: {r['loss']}; optimizer {r['optimizer']}, learning rate {r['learning_rate']}, "
        f"{r['schedule']} schedule, {r['warmup_steps']} warm-up steps",
        f"- batch {r['batch_size']}, {r['epochs']} epoch(s)"
        + (f", stopped at {r['max_steps']} steps" if r["max_steps"] > 0 else "")
        + f", seed {r['seed']}: {t['steps']} steps in {t['seconds']:.1f} s on {record['device']} "
        f"({record['threads']} threads)",
        *([f"- reproduce: `{record['command']}`"] if record.get("command") else []),
        "",
        "## Data",
        "",
        *[f"- {k}: {_fmt(v)}" for k, v in data.items() if k != "labels_read_as"],
        f"- labels read as: {record['labels_read_as']} (--labels {record['label_mode']})",
        f"- label orientation check (base model's cosine vs labels on the training pairs): "
        f"Spearman {_fmt(o['spearman'])}, verdict **{o['verdict']}**",
        "",
        "## Evaluation (cosine similarity; Spearman and Pearson against gold scores)",
        "",
        "| set | pairs | Spearman before | Spearman after | Pearson before | Pearson after |",
        "|---|---|---|---|---|---|",
    ]
    for name, before in m["before"].items():
        after = m["after"][name]
        lines.append(
            f"| {name} | {before['pairs']} | {before['spearman']:.4f} | {after['spearman']:.4f} "
            f"| {before['pearson']:.4f} | {after['pearson']:.4f} |"
        )
    for name, note in m.get("notes", {}).items():
        lines.append(f"\n{name}: {note}")
    mse = m["train_mse"]
    lines += [
        "",
        f"Training-set loss (MSE of cosine vs label over all {data['rows']} pairs): "
        f"{mse['before']:.4f} before, {mse['after']:.4f} after.",
        "",
        "## Versions",
        "",
        *[f"- {k} {v}" for k, v in record["versions"].items()],
        "",
        f"Record key (data + recipe + base + versions): `{record['key']}`",
        "",
    ]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (dict, list)):
        return f"`{json.dumps(v)}`"
    return f"`{v}`" if isinstance(v, str) and ("/" in v or len(v) == 64) else str(v)
