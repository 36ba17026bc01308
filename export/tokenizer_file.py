"""The artifact's tokenizer.json: truncating at max_seq_length and padding to the batch's longest.

all-MiniLM-L6-v2's shipped tokenizer.json truncates at 128 and pads every input to 128: as is,
a short text would pay for 128 tokens, and a text past 128 would be cut before the model's 256.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from embedrt.errors import ModelLoadError

from .source import SourceModel


def load_source_tokenizer(source: SourceModel) -> Tokenizer:
    """The fast tokenizer of the source folder (tokenizer.json, or built by transformers)."""
    path = source.transformer_path / "tokenizer.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            str(source.transformer_path), use_fast=True
        ).backend_tokenizer
    except Exception as e:  # transformers raises many types for a folder without a tokenizer
        raise ModelLoadError(f"no usable tokenizer in {source.transformer_path}: {e}") from None


def pad_token(tokenizer: Tokenizer) -> tuple[int, str]:
    padding = tokenizer.padding
    if padding:
        return int(padding["pad_id"]), str(padding["pad_token"])
    for token in ("[PAD]", "<pad>"):
        if (tid := tokenizer.token_to_id(token)) is not None:
            return tid, token
    return 0, tokenizer.id_to_token(0) or "[PAD]"


def write_tokenizer(source: SourceModel, out_path: Path) -> int:
    """Write tokenizer.json for the artifact; returns the pad token id."""
    tokenizer = load_source_tokenizer(source)
    pad_id, pad = pad_token(tokenizer)
    tokenizer.enable_truncation(max_length=source.max_seq_length)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)  # no length: the batch's longest row
    tokenizer.save(str(out_path))
    return pad_id
