"""Ray Data: embed a text column with one Encoder per actor (extra 'ray').

    import ray
    from embedrt.ray import EmbedBatch

    ds = ray.data.read_parquet("s3://bucket/texts/")
    ds = ds.map_batches(EmbedBatch, fn_constructor_kwargs={"model": "/shared/all-MiniLM-L6-v2",
                        "text_column": "text"}, concurrency=8, num_cpus=2)   # num_gpus=1 on GPUs
    ds.write_parquet("s3://bucket/embeddings/")

(Ray 2.51+ prefers compute=ray.data.ActorPoolStrategy(size=8) to concurrency=8, which still
works with a deprecation warning.) Ray builds EmbedBatch once per actor, so the artifact is
verified and its ONNX Runtime session created once per actor, with as many intra-op threads as
CPUs Ray assigned the actor (its num_cpus), and on the GPU only when Ray assigned it one
(num_gpus). Each call adds `embedding`
(float32, dim per row) and `tokens` (int32, tokens the model saw) to the batch, in the batch's
own format: pandas, pyarrow (embedding as fixed_size_list<float32>[dim], the local job's
parquet type) or numpy. Rows keep their order; a batch is sorted by length only inside
Encoder.encode_tokens.

A text that is not a string, or is empty, stops the job with an InputError naming the row (by
id_column when given); `embedrt embed --ray --on-error skip` scans first and lists bad rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..batching import BatchPlan
from ..errors import ConfigError, InputError, missing_extra
from ..jobs.readers import (  # the local job's row check: same rules, same words
    InputSpec,
    fields_record,
)
from ..session import SessionOptions, default_threads


def require_ray() -> Any:
    """The ray module, or the error naming the pip command for the 'ray' extra."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray without [data] lacks it)
    except ImportError:
        raise missing_extra("ray", "ray") from None
    return ray


@dataclass(frozen=True)
class ActorShare:
    """What Ray gave the calling actor: CPUs (float, may be fractional) and GPUs."""

    cpus: float = 0.0
    gpus: float = 0.0

    @classmethod
    def current(cls) -> ActorShare:
        """The calling actor's share; all zero outside a Ray actor (a plain call, a test)."""
        ray = require_ray()
        if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
            return cls()
        got = ray.get_runtime_context().get_assigned_resources()
        return cls(float(got.get("CPU", 0.0)), float(got.get("GPU", 0.0)))


class EmbedBatch:
    """Callable class for Dataset.map_batches: adds embeddings of text_column to each batch.

    model: artifact directory, readable on every node (shared storage or the same path).
    text_column: the column of texts. id_column: a column that names rows in errors.
    device: auto = cuda/tensorrt when Ray gave the actor a GPU, else cpu (an actor without
        num_gpus must not take a GPU another actor was given). precision: as Encoder.load.
    threads: ONNX Runtime intra-op threads; None = the actor's CPUs (at least 1).
    batch_size / batch_tokens: rows and padded tokens per inference run (Encoder's).
    max_seq_length: truncate at this many tokens, at most the artifact's (as Encoder.load).
    spinning: as Encoder.load; "run" by default: ONNX Runtime's threads spin only while a run
        is in flight, not between runs against Ray's own threads on the actor's CPUs.
    keep_text: False drops the text column from the output (an embedding job that writes
        only ids and vectors need not move long texts through the object store again).
    prompt_name: the model's prompt prepended to every text (e.g. "document"); None = the
        model's default prompt, if any, as Encoder.encode. An unknown name fails the actor's start.
    """

    def __init__(
        self,
        model: str | Path,
        text_column: str = "text",
        *,
        id_column: str | None = None,
        embedding_column: str = "embedding",
        tokens_column: str | None = "tokens",
        device: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        batch_size: int = 32,
        batch_tokens: int = BatchPlan.max_tokens,
        max_seq_length: int | None = None,
        spinning: str | bool = SessionOptions.spinning,
        keep_text: bool = True,
        prompt_name: str | None = None,
    ):
        from ..encoder import Encoder

        share = ActorShare.current()
        if device == "auto" and share.gpus <= 0:
            device = "cpu"
        if threads is None and share.cpus > 0:  # no more than the process may use, though
            threads = max(1, min(math.floor(share.cpus), default_threads()))
        self.text_column, self.id_column = text_column, id_column
        self.embedding_column, self.tokens_column = embedding_column, tokens_column
        self.batch_size, self.keep_text = batch_size, keep_text
        self.threads = threads  # what the session got (None: every CPU the process may use)
        self.encoder = Encoder.load(
            model,
            device,
            precision,
            threads=threads,
            spinning=spinning,
            batch_tokens=batch_tokens,
            max_seq_length=max_seq_length,
        )
        self.encoder.apply_prompt([], prompt_name)  # an unknown prompt name: here, at start
        self.prompt_name = prompt_name
        self._spec = InputSpec(Path("batch"), "parquet", text_field=text_column)

    def __call__(self, batch: Any) -> Any:
        kind = batch_kind(batch)
        texts = column_values(batch, self.text_column, kind)
        self._check(batch, kind, texts)
        rows = self.encoder.tokenize(self.encoder.apply_prompt(texts, self.prompt_name))
        emb = self.encoder.encode_tokens(rows, self.batch_size)
        tokens = np.fromiter(map(len, rows), dtype=np.int32, count=len(rows))
        return self._with_outputs(batch, kind, emb, tokens)

    def _check(self, batch: Any, kind: str, texts: list[Any]) -> None:
        for i, text in enumerate(texts):
            error = fields_record(self._spec, i, {self.text_column: text}).error
            if error is None:
                continue
            if self.id_column is not None:
                where = f"row {self.id_column}={column_values(batch, self.id_column, kind)[i]!r}"
            else:
                where = f"row {i} of a batch of {len(texts)} (pass id_column to name it by id)"
            raise InputError(
                f"{where}: {error}. Filter bad rows out before map_batches, or run "
                "`embedrt embed --ray --on-error skip`, which lists them"
            )

    def _with_outputs(self, batch: Any, kind: str, emb: np.ndarray, tokens: np.ndarray) -> Any:
        drop = () if self.keep_text else (self.text_column,)
        if kind == "pyarrow":
            import pyarrow as pa

            table = batch.drop_columns(list(drop)) if drop else batch
            dim = emb.shape[1]
            values = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim)
            table = _set_column(table, self.embedding_column, values)
            if self.tokens_column:
                table = _set_column(table, self.tokens_column, pa.array(tokens))
            return table
        if kind == "pandas":
            frame = batch.drop(columns=list(drop)) if drop else batch.copy(deep=False)
            frame[self.embedding_column] = list(emb)  # one float32 [dim] array per row
            if self.tokens_column:
                frame[self.tokens_column] = tokens
            return frame
        out = {k: v for k, v in batch.items() if k not in drop}
        out[self.embedding_column] = emb  # numpy: float32 [rows, dim]
        if self.tokens_column:
            out[self.tokens_column] = tokens
        return out


def batch_kind(batch: Any) -> str:
    """pyarrow | pandas | numpy, the three formats map_batches hands over."""
    module = type(batch).__module__.split(".")[0]
    if module == "pyarrow":
        return "pyarrow"
    if module == "pandas":
        return "pandas"
    if isinstance(batch, dict):
        return "numpy"
    raise ConfigError(
        f"EmbedBatch takes pandas, pyarrow or numpy batches, got {type(batch).__name__}"
    )


def column_values(batch: Any, name: str, kind: str) -> list[Any]:
    """A column as Python values, nulls as None (pandas stores a missing string as NaN)."""
    names = batch.column_names if kind == "pyarrow" else list(batch.keys())
    if name not in names:
        raise InputError(
            f"no column {name!r} in the batch (columns: {', '.join(map(str, names))}); "
            "pass the right text_column"
        )
    if kind == "pyarrow":
        return batch.column(name).to_pylist()
    values = batch[name].tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def _set_column(table: Any, name: str, values: Any) -> Any:
    i = table.schema.get_field_index(name)
    return table.set_column(i, name, values) if i >= 0 else table.append_column(name, values)
