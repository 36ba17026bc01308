"""Encoder: texts in, L2-normalized sentence embeddings out, on the best provider available.

    enc = Encoder.load("artifacts/all-MiniLM-L6-v2")          # device="auto", precision="auto"
    vecs = enc.encode(["A man plays a guitar.", "Someone plays music."])   # float32 (2, 384)

The artifact's graph does pooling and normalization itself; the encoder tokenizes, sorts texts
by token length, pads each batch to its own longest row, runs it, and restores input order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .batching import BatchPlan, plan_batches
from .config import check_int
from .errors import ConfigError, ProviderError
from .loading import (
    DEFAULT_TRT_CACHE,
    MAX_BATCH_SIZE,
    EncoderInfo,
    LoadOptions,
    load_on,
)
from .manifest import Manifest, load_manifest
from .providers import auto_devices, resolve_device
from .runner import EncodeStats, Rows, Runner
from .session import (
    SessionOptions,
    available_providers,
    spinning_mode,
)
from .tokenizer import TextTokenizer, as_text_list, check_token_rows
from .vectors import similarity

log = logging.getLogger("embedrt")


class Encoder:
    """A loaded artifact: its tokenizer and a Runner over its ONNX Runtime sessions.
    Thread-safe for concurrent encode()."""

    def __init__(
        self, manifest: Manifest, tokenizer: TextTokenizer, runner: Runner, info: EncoderInfo
    ):
        self.manifest = manifest
        self.info = info
        self.runner = runner
        self._tokenizer = tokenizer

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "auto",
        precision: str = "auto",
        *,
        threads: int | None = None,
        spinning: str | bool = SessionOptions.spinning,
        streams: int | None = None,
        batch_tokens: int = BatchPlan.max_tokens,
        cache_dir: str | Path | None = None,
        variant: str | None = None,
        max_seq_length: int | None = None,
    ) -> Encoder:
        """Load an artifact directory, verifying every file it reads against the manifest.

        device: auto | cpu | cuda | tensorrt. precision: auto | fp32 | fp16 | int8.
        threads: ONNX Runtime intra-op threads, from 1 to the CPUs this process may use (more is
            refused: oversubscribed threads only fight each other); None = all of them.
        spinning: how ONNX Runtime's threads wait for work: "run" (default) spin-waits only
            while a run is in flight, "on" also between runs, "off" never (True / False are
            "on" / "off"; see session.SPINNING).
        streams: CPU only: calls with at least this many batches run this many at once, each on
            threads/streams cores, on a second session (one more copy of the weights:
            streams.py); None = one per thread, at most 8, for a graph of at most 64 MB, its
            files together (a small model's int8), else 1; 1 = every batch on all threads, one
            after another.
        batch_tokens: padded tokens per batch (rows x longest row), bounding memory; at most
            MAX_BATCH_TOKENS. On the CPU a batch also holds at most what keeps the graph's
            widest activation under batching.CPU_ACTIVATION_FLOATS (512 tokens for MPNet).
        cache_dir: TensorRT engine/timing caches (default: ~/.cache/embedrt/tensorrt; the
            artifact directory may be read-only). Entries are keyed by the variant's sha256.
        variant: load this variant by name (e.g. "opt"), overriding precision.
        max_seq_length: truncate texts at this many tokens, from 2 to the artifact's own (as
            `model.max_seq_length = N` in sentence-transformers); None = the artifact's. A long
            text's attention grows with the square of its length: this bounds it at load, where
            `embedrt export --max-seq-length` bounds it in the artifact.
        """
        options = LoadOptions(
            precision,
            threads,
            spinning_mode(spinning),
            streams,
            batch_tokens,
            Path(cache_dir) if cache_dir else DEFAULT_TRT_CACHE,
            variant,
            max_seq_length,
        )
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(
                f"path must be an artifact directory (str or path), got {type(path).__name__}"
            )
        path = Path(path)
        manifest = load_manifest(path)
        available = available_providers()
        if device != "auto":
            return cls(
                manifest, *load_on(path, manifest, resolve_device(device, available), options)
            )
        # auto: TensorRT > CUDA > CPU among what ONNX Runtime offers. A GPU build lists TensorRT
        # even where its libraries are missing and then silently runs CUDA: fall through.
        devices = auto_devices(available)
        for i, candidate in enumerate(devices):
            try:
                return cls(manifest, *load_on(path, manifest, candidate, options))
            except ProviderError as e:
                if i == len(devices) - 1:
                    raise
                log.warning("device %s is not usable (%s); trying %s", candidate, e, devices[i + 1])
        raise ProviderError(f"ONNX Runtime offers no usable provider; available: {available}")

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def max_seq_length(self) -> int:
        """Tokens a text keeps, special tokens included: the artifact's max_seq_length, or the
        shorter one Encoder.load was given."""
        return self.info.max_seq_length

    @property
    def tokenizer(self) -> TextTokenizer:
        """The artifact's tokenizer (thread-safe): the server's TEI routes use it directly."""
        return self._tokenizer

    def encode(
        self,
        texts: str | Iterable[str],
        batch_size: int = 32,
        stats: EncodeStats | None = None,
        *,
        prompt_name: str | None = None,
        prompt: str | None = None,
        dimensions: int | None = None,
    ) -> np.ndarray:
        """Embeddings of texts: float32 [len(texts), dim], or [dim] for a single string.

        As SentenceTransformer.encode with the same arguments: prompt (a text) or prompt_name
        (one of the model's prompts) is prepended to every text, the model's default prompt when
        neither is given; dimensions keeps the first k floats (sentence-transformers'
        truncate_dim, for Matryoshka models: not renormalized). Texts longer than
        max_seq_length tokens are truncated, as sentence-transformers does.
        batch_size caps rows per batch; the token budget given at load caps padded tokens.
        stats, if given, is incremented with rows, batches, real and padded tokens.
        """
        check_int("dimensions", dimensions, most=self.dim, none=True)
        prompted = self.apply_prompt(as_text_list(texts), prompt_name, prompt)
        vectors = self._encode_rows(self.tokenize(prompted), batch_size, stats)
        out = self.truncate(vectors, dimensions)
        return out[0] if isinstance(texts, str) else out

    def encode_query(self, texts: str | Iterable[str], **kwargs: Any) -> np.ndarray:
        """encode() with the model's "query" prompt (none if it has none), as
        sentence-transformers' encode_query: the default prompt does not apply."""
        return self._encode_as("query", texts, **kwargs)

    def encode_document(self, texts: str | Iterable[str], **kwargs: Any) -> np.ndarray:
        """encode() with the model's "document" prompt (none if it has none), as
        sentence-transformers' encode_document: the default prompt does not apply."""
        return self._encode_as("document", texts, **kwargs)

    def _encode_as(self, task: str, texts: str | Iterable[str], **kwargs: Any) -> np.ndarray:
        if kwargs.get("prompt_name") is None and kwargs.get("prompt") is None:
            kwargs["prompt"] = self.manifest.prompts.get(task, "")
        return self.encode(texts, **kwargs)

    def apply_prompt(
        self, texts: list[str], prompt_name: str | None = None, prompt: str | None = None
    ) -> list[str]:
        """texts with the prompt prepended: prompt if given, else the model's prompt named
        prompt_name, else its default prompt (if any). ConfigError for an unknown name."""
        text = resolve_prompt(self.manifest, prompt_name, prompt)
        return [text + t for t in texts] if text else texts

    def truncate(self, vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
        """The first `dimensions` floats of each vector (all of them for None); ConfigError
        unless 1 <= dimensions <= dim."""
        check_int("dimensions", dimensions, most=self.dim, none=True)
        return vectors if dimensions is None else np.ascontiguousarray(vectors[..., :dimensions])

    def tokenize(self, texts: str | Iterable[str]) -> list[list[int]]:
        """Token ids per text (truncated, special tokens included), for encode_tokens()."""
        return self._tokenizer.tokenize(as_text_list(texts))

    def encode_tokens(
        self, rows: Rows, batch_size: int = 32, stats: EncodeStats | None = None
    ) -> np.ndarray:
        """Embeddings of already tokenized rows (see tokenize), float32 [len(rows), dim].

        Each row is this model's token ids, special tokens included, at most max_seq_length
        of them: an id outside the tokenizer's vocabulary or a longer row is refused
        (InputError naming the row), never cut or run as given. Rows are sorted by length,
        batched by the token budget and batch_size, each batch padded to its own longest row,
        and the output is returned in input order.
        """
        check_token_rows(rows, self.max_seq_length, self._tokenizer.vocab_size)
        return self._encode_rows(rows, batch_size, stats)

    def _encode_rows(self, rows: Rows, batch_size: int, stats: EncodeStats | None) -> np.ndarray:
        """encode_tokens without the checks, for rows this encoder's tokenizer made."""
        check_int("batch_size", batch_size, most=MAX_BATCH_SIZE)
        plan = replace(self.runner.plan, max_rows=batch_size)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        for idx, vecs in self.runner.run_planned(rows, plan_batches(lengths, plan), stats):
            out[idx] = vecs
        return out

    def count_tokens(self, texts: str | Iterable[str], truncate: bool = True) -> np.ndarray:
        """Tokens per text, special tokens included (int64 [len(texts)]); with truncate=False
        the count the text would have without max_seq_length (to tell whether it is cut): for
        a text over 8 characters a token of max_seq_length + 16 (tokenizer.HEAD_CHARS_PER_TOKEN),
        tokenized from its head, a lower bound: max_seq_length + 16 at least."""
        if not truncate:
            return np.array(
                self._tokenizer.untruncated_lengths(as_text_list(texts)), dtype=np.int64
            )
        rows = self.tokenize(texts)
        return np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Similarity matrix [len(a), len(b)] by the model's similarity function (cosine unless
        its sentence-transformers config names dot, euclidean or manhattan), as
        SentenceTransformer.similarity; 1-D inputs count as one row."""
        return similarity(a, b, self.manifest.similarity_fn)

    def describe(self) -> dict[str, Any]:
        return {
            **self.info.__dict__,
            "active_providers": list(self.info.active_providers),
            "available_providers": available_providers(),
        }


def resolve_prompt(manifest: Manifest, prompt_name: str | None, prompt: str | None) -> str:
    """The prompt text a call gets, as sentence-transformers resolves it: prompt if given (a
    prompt_name beside it is ignored, with a warning), else the prompt named prompt_name, else
    the model's default prompt, else none ("")."""
    if prompt is not None:
        if prompt_name is not None:
            log.warning("both prompt and prompt_name given: prompt_name %r is ignored", prompt_name)
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt must be a string, got {type(prompt).__name__}")
        return prompt
    name = prompt_name if prompt_name is not None else manifest.default_prompt_name
    if name is None:
        return ""
    if not isinstance(name, str) or name not in manifest.prompts:
        known = ", ".join(map(repr, manifest.prompts)) or "none"
        raise ConfigError(f"prompt_name {name!r} is not one of the model's prompts ({known})")
    return manifest.prompts[name]
