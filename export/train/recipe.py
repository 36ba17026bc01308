"""The fine-tune recipe of the model card, run with sentence-transformers' trainer.

CosineSimilarityLoss (MSE between a pair's cosine and its label), AdamW, batch 16, 1 epoch,
lr 5e-5 decayed linearly to 0 with no warmup, seed 42: 1000 pairs -> 63 steps. The trainer is
SentenceTransformerTrainer (sentence-transformers' supported path since v3; `model.fit` is a
wrapper over it). Same data, seed and machine give the same weights: one process, no dataloader
workers, the trainer seeds torch and the sampler from `seed`.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from embedrt.errors import ConfigError

from .pairs import TrainingPairs


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights besides the data. Defaults: the model card's."""

    base: str = "all-MiniLM-L6-v2"  # a sentence-transformers folder or a known model name
    batch_size: int = 16  # pairs per optimizer step (the card's; 1000 pairs -> 63 steps)
    epochs: int = 1  # passes over the pairs
    learning_rate: float = 5e-5  # peak AdamW learning rate, per step
    schedule: str = "linear"  # decay to 0 over the run (transformers' lr_scheduler_type)
    warmup_steps: int = 0  # steps of linear warm-up; the card used none
    seed: int = 42  # seeds data order, dropout and the sampler
    max_steps: int = -1  # > 0 stops after that many steps (tests); -1: epochs decide

    def __post_init__(self) -> None:
        bad = [
            f"{name} {value!r}"
            for name, value, ok in (
                ("batch_size", self.batch_size, self.batch_size >= 1),
                ("epochs", self.epochs, self.epochs >= 1),
                ("learning_rate", self.learning_rate, self.learning_rate > 0),
                ("warmup_steps", self.warmup_steps, self.warmup_steps >= 0),
                ("max_steps", self.max_steps, self.max_steps == -1 or self.max_steps >= 1),
            )
            if not ok
        ]
        if bad:
            raise ConfigError(
                f"recipe: {', '.join(bad)} out of range (batch_size, epochs >= 1; "
                "learning_rate > 0; warmup_steps >= 0; max_steps -1 or >= 1)"
            )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "loss": "CosineSimilarityLoss (MSE)", "optimizer": "AdamW"}


@dataclass(frozen=True)
class TrainLog:
    """What the trainer did: steps run, loss per step, wall time in seconds."""

    steps: int
    losses: tuple[float, ...]
    seconds: float


def train_pairs(model: Any, pairs: TrainingPairs, recipe: Recipe, device: str = "cpu") -> TrainLog:
    """Fine-tune `model` (a SentenceTransformer, changed in place) on `pairs` by `recipe`."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from transformers.trainer_callback import PrinterCallback

    data = Dataset.from_dict(
        {
            "sentence_0": list(pairs.sentence_0),
            "sentence_1": list(pairs.sentence_1),
            "label": list(pairs.labels),
        }
    )
    # Checkpoints go to a scratch folder that is thrown away: the caller saves the final model.
    with tempfile.TemporaryDirectory(prefix="embedrt-train-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=recipe.batch_size,
            num_train_epochs=recipe.epochs,
            max_steps=recipe.max_steps,
            learning_rate=recipe.learning_rate,
            lr_scheduler_type=recipe.schedule,
            warmup_steps=recipe.warmup_steps,
            seed=recipe.seed,
            data_seed=recipe.seed,
            use_cpu=device == "cpu",
            save_strategy="no",
            report_to="none",
            logging_steps=1,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=data, loss=CosineSimilarityLoss(model)
        )
        trainer.remove_callback(PrinterCallback)  # it prints a dict per step; the caller reports
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    losses = tuple(float(h["loss"]) for h in trainer.state.log_history if "loss" in h)
    return TrainLog(trainer.state.global_step, losses, seconds)
