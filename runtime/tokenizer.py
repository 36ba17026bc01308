"""Tokenization: texts checked, then the artifact's tokenizer.json, truncating at
max_seq_length, never padding.

Padding happens per batch after length sorting (batching.py), so the tokenizer returns rows of
their true length. Huge inputs are truncated by the tokenizer, not rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Encoding, Tokenizer

from .errors import InputError, ModelLoadError

# One text's token ids: a list as the tokenizer gives them, or an int array (a job packs its
# rows, jobs/shard_memory.py).
Row = list[int] | np.ndarray

# Texts per call into the tokenizer library. Its intermediate encodings (tokens, offsets,
# overflow past max_seq_length) take kilobytes per text until the call returns, and the
# allocator keeps that peak; 1024 texts bound it to a few MB and still give the library's
# threads enough texts per call.
CHUNK_TEXTS = 1024
# A text longer than this many characters per token of max_length + HEAD_SLACK_TOKENS is
# tokenized from a piece of it cut at a space (cut_at_space): a 4 MB text cost the tokenizer
# seconds only to be cut to 256 tokens, and a document of 10 kB four times the work it keeps.
# English runs 4-5 characters a token (WordPiece and byte-level BPE), so the first piece nearly
# always holds enough tokens; a piece that does not is widened 4 times and tokenized again. A
# text with no space near the cut is tokenized whole.
HEAD_CHARS_PER_TOKEN = 8
# The piece holds this many tokens past max_length, so that what the cut may change (the last
# word's pieces, a trailing space's token) lies beyond the truncation point.
HEAD_SLACK_TOKENS = 16


class TextTokenizer:
    """Turns texts into token id rows of at most max_length tokens (special tokens included)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, lowercase: bool = False):
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        self._tok = tokenizer
        self.max_length = max_length
        self.lowercase = lowercase
        self._untruncated: Tokenizer | None = None  # built on first use, see encodings
        self._left: Tokenizer | None = None  # built on first use, see tokenize_left

    @classmethod
    def load(cls, path: str | Path, max_length: int, lowercase: bool = False) -> TextTokenizer:
        return cls.from_bytes(Path(path).read_bytes(), str(path), max_length, lowercase)

    @classmethod
    def from_bytes(
        cls, data: bytes, name: str, max_length: int, lowercase: bool = False
    ) -> TextTokenizer:
        """A tokenizer.json's content (already verified against the manifest); name for errors."""
        try:
            tok = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as e:  # tokenizers raises a bare Exception on malformed files
            raise ModelLoadError(f"tokenizer file {name!r} cannot be read: {e}") from None
        return cls(tok, max_length, lowercase)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, in input order."""
        return self._rows(self._tok, texts, head=True)

    def tokenize_to(self, text: str, length: int) -> list[int]:
        """One text's token ids cut to `length` tokens (at most max_length) by the tokenizer's
        own steps, as its truncation at that length cuts: the content tokens cut to what leaves
        room for the special tokens, then those added."""
        if self.lowercase:
            text = text.lower()
        encoding = self._encode(self._tok, [text], head=True, special=False)[0]
        room = max(length - self._tok.num_special_tokens_to_add(False), 0)
        if len(encoding.ids) > room:
            encoding.truncate(room)
        return list(self._tok.post_process(encoding).ids)

    def untruncated_lengths(self, texts: list[str]) -> list[int]:
        """Token counts without truncation, to tell a client its text would be cut: the kept
        tokens and the content the truncation cut off (the encoding's overflow). A text long
        enough to be cut before tokenizing is counted from its piece: at least max_length +
        HEAD_SLACK_TOKENS, a lower bound (so a megabyte of text is counted in milliseconds)."""
        if self.lowercase:
            texts = [t.lower() for t in texts]
        specials = self._tok.num_special_tokens_to_add(False)
        encodings = self._encode(self._tok, texts, head=True, special=True)
        return [len(e.ids) + _past_truncation(e, specials) for e in encodings]

    def _rows(self, tok: Tokenizer, texts: list[str], head: bool) -> list[list[int]]:
        """Each text's truncated token ids, special tokens added, CHUNK_TEXTS at a time."""
        if self.lowercase:
            texts = [t.lower() for t in texts]
        rows: list[list[int]] = []
        for i in range(0, len(texts), CHUNK_TEXTS):
            chunk = texts[i : i + CHUNK_TEXTS]
            rows += [e.ids for e in self._encode(tok, chunk, head=head, special=True)]
        return rows

    def _encode(self, tok: Tokenizer, texts: list[str], head: bool, special: bool) -> list[Any]:
        """tok's truncated Encoding of each text, from one call into the library for all of
        them (and one more for the few whose piece must be widened).

        A long text is tokenized from its head (or, head=False, its tail) cut at a space
        (cut_at_space), kept when the truncation cut at least HEAD_SLACK_TOKENS more off it
        (its overflow), else widened and tokenized again. Why that gives the whole text's
        tokens: every tokenizer here normalizes characters locally and splits words at spaces
        before its model sees them (WordPiece, BPE and Unigram alike), so the tokens of the
        words before a cut at a space do not depend on what follows; only the last few tokens
        before the cut may, and the slack keeps them past the truncation point. The truncating
        tokenizer counts the overflow itself, so no untruncated copy of it is needed.
        tests/runtime/test_tokenizer.py checks it on random texts."""
        # encode_batch_fast skips offset tracking, which embeddings never use.
        encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
        specials = tok.num_special_tokens_to_add(False) if special else 0
        out: list[Any] = [None] * len(texts)
        todo = list(range(len(texts)))
        chars = HEAD_CHARS_PER_TOKEN * (self.max_length + HEAD_SLACK_TOKENS)
        while todo:
            pieces = [cut_at_space(texts[i], chars, head) for i in todo]
            encodings = encode([p for p, _ in pieces], add_special_tokens=special)
            retry = []
            for i, (_, cut), e in zip(todo, pieces, encodings, strict=True):
                if cut and _past_truncation(e, specials) < HEAD_SLACK_TOKENS:
                    retry.append(i)
                else:
                    out[i] = e
            todo, chars = retry, chars * 4
        return out

    # ---- for the HTTP service's TEI routes: left truncation, token details, decoding ----

    @property
    def vocab_size(self) -> int:
        """Token ids this tokenizer knows (added tokens included): valid ids are below it."""
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def tokenize_left(self, texts: list[str]) -> list[list[int]]:
        """tokenize() truncating from the left: each row keeps a text's LAST tokens (special
        tokens still added), as text-embeddings-inference's truncation_direction "Left"."""
        if self._left is None:
            left = Tokenizer.from_str(self._tok.to_str())
            left.no_padding()
            left.enable_truncation(max_length=self.max_length, direction="left")
            self._left = left
        return self._rows(self._left, texts, head=False)

    def encodings(self, texts: list[str], add_special_tokens: bool = True) -> list[Encoding]:
        """Each text's untruncated Encoding (ids, tokens, char offsets, special-token mask), for
        a client that asks how a text tokenizes."""
        if self.lowercase:
            texts = [t.lower() for t in texts]
        return list(self._full().encode_batch(texts, add_special_tokens=add_special_tokens))

    def decode(self, rows: list[list[int]], skip_special_tokens: bool = True) -> list[str]:
        """The text of each row of token ids (ids at or past vocab_size must be refused first:
        the library drops them silently)."""
        return list(self._tok.decode_batch(rows, skip_special_tokens=skip_special_tokens))

    def _full(self) -> Tokenizer:
        # An in-memory copy of this (already verified) tokenizer with truncation off: the
        # truncation setting is shared state, so it is never toggled on the tokenizer in use.
        if self._untruncated is None:
            full = Tokenizer.from_str(self._tok.to_str())
            full.no_truncation()
            full.no_padding()
            self._untruncated = full
        return self._untruncated


def cut_at_space(text: str, chars: int, head: bool) -> tuple[str, bool]:
    """(a piece of text of up to about twice `chars` characters, True), cut at a space: its head,
    or with head=False its tail; (text, False) for a text no longer than chars or with no space
    near the mark. Only U+0020 counts: some normalizers delete other "whitespace" (a form feed
    is a control character to BERT's), gluing the words around it. The piece never ends (head)
    or starts (tail) with whitespace: a special token that strips the whitespace beside it
    (RoBERTa's <mask>, lstrip) takes a whole run of it in the text, where the piece would make
    tokens of the part it kept."""
    if len(text) <= chars:
        return text, False
    if head:
        cut = text.find(" ", chars, 2 * chars)  # a space soon after the mark, else shortly before
        if cut < 0:
            cut = text.rfind(" ", chars // 2, chars)
        while cut > 0 and text[cut - 1].isspace():
            cut -= 1
        return (text, False) if cut <= 0 else (text[:cut], True)
    end = len(text) - chars
    cut = text.rfind(" ", max(0, end - chars), end)  # a space soon before the mark, else after
    if cut < 0:
        cut = text.find(" ", end, end + chars // 2)
    while 0 <= cut < len(text) - 1 and text[cut + 1].isspace():
        cut += 1
    return (text, False) if cut < 0 or cut >= len(text) - 1 else (text[cut + 1 :], True)


def _past_truncation(encoding: Encoding, specials: int) -> int:
    """Content tokens the truncation cut off: its overflow pieces, each post-processed with
    `specials` special tokens of its own."""
    return sum(len(o.ids) - specials for o in encoding.overflowing)


def utf8_encodable(text: str) -> bool:
    """False for a str holding a lone surrogate (a \\ud800 JSON escape, or undecodable bytes read
    with surrogateescape): no UTF-8 tokenizer takes it, and no UTF-8 file can store it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def pad_rows(rows: Sequence[Row], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask (int64, [len(rows), width]), right-padded with pad_id."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
    mask = (np.arange(width, dtype=np.int64)[None, :] < lengths[:, None]).astype(np.int64)
    return ids, mask


def as_text_list(texts: Any) -> list[str]:
    """texts as a list of str; InputError naming the first bad element's index and type."""
    if isinstance(texts, str):
        if not utf8_encodable(texts):
            raise InputError(
                "the text holds a lone surrogate (an unpaired \\ud800-\\udfff): "
                "not text any tokenizer can read"
            )
        return [texts]
    if isinstance(texts, (bytes, bytearray)):
        raise InputError(
            "texts must be str, got bytes: decode it first (e.g. data.decode('utf-8'))"
        )
    if texts is None or isinstance(texts, Mapping) or not isinstance(texts, Iterable):
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InputError(f"texts[{i}] is {type(t).__name__}, expected str")
        if not utf8_encodable(t):
            raise InputError(
                f"texts[{i}] holds a lone surrogate (an unpaired \\ud800-\\udfff): "
                "not text any tokenizer can read"
            )
    return items


def check_token_rows(rows: Any, max_length: int, vocab_size: int) -> None:
    """InputError naming the first bad row unless rows is a sequence of rows of token ids as
    tokenize gives them: integers in [0, vocab_size), at most max_length of them (an empty row
    is a text with no tokens: the zero vector). An id out of range must not reach the graph:
    ONNX Runtime's Gather reads a negative one from the end of the table, a silently wrong
    vector."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence | np.ndarray):
        raise InputError(f"rows must be a list of token id lists, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        # a str or bytes row is a 0-d array, as is a number
        ids = np.asarray(row) if isinstance(row, Sequence | np.ndarray) else None
        if ids is None or ids.ndim != 1:
            raise InputError(f"rows[{i}] is {type(row).__name__}, expected a list of token ids")
        if ids.size and ids.dtype.kind not in "iu":
            what = {"U": "strings", "S": "bytes", "f": "floats", "b": "booleans"}.get(
                ids.dtype.kind, "values that are not int64 integers"
            )
            raise InputError(f"rows[{i}] holds {what}, expected integer token ids")
        if len(ids) > max_length:
            raise InputError(
                f"rows[{i}] has {len(ids)} tokens; this model takes at most {max_length} "
                "(max_seq_length, special tokens included): cut it, as tokenize() does"
            )
        low, high = (int(ids.min()), int(ids.max())) if ids.size else (0, 0)
        if low < 0 or high >= vocab_size:
            raise InputError(
                f"rows[{i}] holds token id {low if low < 0 else high}; this tokenizer's ids "
                f"are 0 to {vocab_size - 1}"
            )
