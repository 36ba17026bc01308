"""Parity at export: the artifact against SentenceTransformer.encode on varied real text.

The check goes through embedrt's own Encoder (tokenizer, batching, session), so it proves what
users run, not just the graph. It fails loudly with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedrt import Encoder
from embedrt.errors import EmbedrtError

# fp32 must match sentence-transformers to float rounding (issue 2's contract).
FP32_MAX_ABS = 1e-4
FP32_MIN_COSINE = 0.99999
_ZERO = 1e-12  # a vector shorter than this is the zero vector

_LONG = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "combined a screw press adapted from wine making with movable metal type, oil-based inks and "
    "a hand mould for casting letters quickly and in large numbers. Before that, books in Europe "
    "were copied by hand in monasteries and in the workshops of professional scribes, a slow and "
    "expensive process that kept written works scarce and costly. Within a few decades of the "
    "first printed Bible, presses had spread to more than two hundred cities across the continent, "
    "and millions of volumes had been produced. The consequences reached far beyond the trade "
    "itself: scholars could compare identical copies of a text, errors could be corrected in new "
    "editions rather than multiplied by copyists, and ideas travelled faster than any authority "
    "could contain them. Pamphlets fuelled religious reform, scientific results circulated among "
    "correspondents in distant countries, and vernacular languages gained standard spellings as "
    "printers chose one form over another. Literacy rose slowly at first and then steadily, as "
    "cheaper books reached merchants, artisans and eventually ordinary households. Historians "
    "still debate how much credit belongs to the machine itself and how much to the commercial "
    "networks, paper mills and universities that surrounded it, but few doubt that the world of "
    "learning after the press looked very different from the world before it. Newspapers, "
    "scientific journals, encyclopaedias and cheap novels all followed in later centuries, each "
    "building on the same basic idea of reproducing a page many times from a single setting of type."
)

PARITY_SENTENCES: tuple[str, ...] = (
    "A man is playing a guitar.",
    "Someone is playing an instrument.",
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "I can't believe it's not butter!!! (Really?) -- yes; really...",
    "Email me at jane.doe@example.com or visit https://example.com/path?q=1&r=2.",
    "The café serves crème brûlée and naïve jalapeño piñatas.",
    "Größere Städte in Österreich: Wien, Graz, Linz.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "Emoji are words too 🙂🚀🔥",
    "    leading and trailing whitespace    ",
    "",
    "a",
    "3.14159 2.71828 1.41421 42 1e-9 0xFF",
    "def encode(self, texts): return self.session.run(texts)",
    "Mr. Smith's dog—a 7-year-old beagle—won the 2nd prize in the U.K. show.",
    "A woman is slicing onions in the kitchen.",
    "The stock market fell sharply on Monday after the announcement.",
    _LONG,
    _LONG[: len(_LONG) // 3],
    " ".join([_LONG] * 3),
)


class ParityError(EmbedrtError):
    """The exported artifact disagrees with sentence-transformers beyond the thresholds."""


@dataclass(frozen=True)
class Parity:
    """Agreement of two embedding sets row by row."""

    max_abs_diff: float
    min_cosine: float
    sentences: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "max_abs_diff": float(f"{self.max_abs_diff:.3g}"),
            "min_cosine": round(self.min_cosine, 8),
            "sentences": self.sentences,
        }

    def summary(self) -> str:
        """One line for a person: max abs diff 2.2e-07, min cosine 0.9999999 on 23 sentences."""
        return (
            f"max abs diff {self.max_abs_diff:.2g}, min cosine {self.min_cosine:.7f} "
            f"on {self.sentences} sentences"
        )


def compare(reference: np.ndarray, ours: np.ndarray) -> Parity:
    """Max absolute difference and minimum row cosine between two [n, dim] arrays."""
    if reference.shape != ours.shape:
        raise ParityError(
            f"shape {ours.shape} differs from sentence-transformers' {reference.shape}"
        )
    diff = float(np.abs(reference.astype(np.float64) - ours).max()) if len(ours) else 0.0
    ref_norm = np.linalg.norm(reference, axis=1, keepdims=True)
    our_norm = np.linalg.norm(ours, axis=1, keepdims=True)
    cosines = (
        (reference / np.maximum(ref_norm, _ZERO)) * (ours / np.maximum(our_norm, _ZERO))
    ).sum(1)
    # Two zero vectors (an empty text where the model gives nothing to pool) agree: cosine 1.
    both_zero = (ref_norm[:, 0] < _ZERO) & (our_norm[:, 0] < _ZERO)
    cos = float(np.where(both_zero, 1.0, cosines).min()) if len(ours) else 1.0
    return Parity(max_abs_diff=diff, min_cosine=cos, sentences=len(ours))


def reference_embeddings(
    source_path: Path, sentences: tuple[str, ...], max_seq_length: int | None = None
) -> np.ndarray:
    """SentenceTransformer.encode of the source folder, on the CPU (truncating at
    max_seq_length where given, as the artifact does)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source_path), device="cpu")
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    return model.encode(list(sentences), batch_size=8, convert_to_numpy=True)


def check_fp32(artifact: Path, reference: np.ndarray, sentences: tuple[str, ...]) -> Parity:
    """Compare the artifact's fp32 variant with the reference; ParityError past the thresholds."""
    enc = Encoder.load(artifact, device="cpu", precision="fp32")
    parity = compare(reference, enc.encode(list(sentences), batch_size=8))
    if parity.max_abs_diff > FP32_MAX_ABS or parity.min_cosine < FP32_MIN_COSINE:
        raise ParityError(
            f"fp32 artifact differs from SentenceTransformer.encode on {parity.sentences} "
            f"sentences: max abs diff {parity.max_abs_diff:.3g} (limit {FP32_MAX_ABS}), "
            f"min cosine {parity.min_cosine:.7f} (limit {FP32_MIN_COSINE}); the export is refused"
        )
    return parity
