"""From a parsed request's inputs to the token rows the scheduler batches: prompts, truncation at
either end, token-id inputs, and the request's limits.

    rows = token_rows(req, RowContext(tokenizer, apply_prompt, max_len, limits, truncate=True))

Runs on the scheduler's worker (it tokenizes), so a request's errors arrive through its future:
InputError (422) for an input past max_seq_length when truncation is off, as
text-embeddings-inference answers it, TooLargeError (413) past --max-request-tokens.

Token-id inputs are taken as the rows to run, as the client's tokenizer (this model's: GET
/tokenize gives them) made them, special tokens included; truncation cuts them at the chosen
end. When a prompt is in effect they are decoded and prompted as text, as
text-embeddings-inference does: a prompt is text and must be tokenized with what follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InputError, TooLargeError
from ..tokenizer import HEAD_SLACK_TOKENS, TextTokenizer
from .config import Limits
from .protocol import EmbedRequest

# texts -> the same texts with the request's prompt prepended (Encoder.apply_prompt, bound to
# the prompt name in effect).
Prompter = Callable[[list[str]], list[str]]


@dataclass(frozen=True)
class RowContext:
    """What turning one request's inputs into rows needs besides the request."""

    tokenizer: TextTokenizer
    prompter: Prompter
    prompted: bool  # a prompt is in effect (token-id inputs then go through text)
    max_length: int  # the encoder's max_seq_length, special tokens included
    limits: Limits
    truncate: bool  # the request's choice, or the server's --auto-truncate


def token_rows(req: EmbedRequest, ctx: RowContext) -> list[list[int]]:
    """One row of token ids per input, in input order (see the module docstring)."""
    texts: list[tuple[int, str]] = []
    rows: list[list[int] | None] = [None] * len(req.inputs)
    for i, item in enumerate(req.inputs):
        if isinstance(item, str):
            texts.append((i, item))
        elif ctx.prompted:  # decoded, then prompted and tokenized as text
            texts.append((i, ctx.tokenizer.decode([item], skip_special_tokens=True)[0]))
        else:
            rows[i] = _cut(item, i, req, ctx)
    if texts:
        prompted = ctx.prompter([t for _, t in texts])
        tok = ctx.tokenizer
        made = tok.tokenize_left(prompted) if req.direction == "left" else tok.tokenize(prompted)
        if not ctx.truncate:
            _refuse_cut(made, prompted, [i for i, _ in texts], req, ctx)
        for (i, _), row in zip(texts, made, strict=True):
            rows[i] = row
    out = [r for r in rows if r is not None]
    budget = ctx.limits.max_request_tokens
    if budget is not None and (total := sum(map(len, out))) > budget:
        raise TooLargeError(
            f"'{req.field}' holds {total} tokens; this server takes at most {budget} per "
            "request: split it into smaller requests"
        )
    return out


def _cut(ids: list[int], i: int, req: EmbedRequest, ctx: RowContext) -> list[int]:
    """A token-id input cut to max_length at the request's end, or refused without truncation."""
    n = ctx.max_length
    if len(ids) <= n:
        return ids
    if not ctx.truncate:
        raise InputError(_too_long(req, i, str(len(ids)), n))
    return ids[-n:] if req.direction == "left" else ids[:n]


def _refuse_cut(
    rows: list[list[int]], texts: list[str], where: list[int], req: EmbedRequest, ctx: RowContext
) -> None:
    """With truncation off: InputError for the first text the tokenizer cut. A row at the limit
    may have been cut, so those texts are counted again without truncation."""
    n = ctx.max_length
    at_limit = [k for k, r in enumerate(rows) if len(r) >= n]
    if not at_limit:
        return
    counts = ctx.tokenizer.untruncated_lengths([texts[k] for k in at_limit])
    for k, count in zip(at_limit, counts, strict=True):
        if count > n:
            many = f"at least {count}" if count >= n + HEAD_SLACK_TOKENS else str(count)
            raise InputError(_too_long(req, where[k], many, n))


def _too_long(req: EmbedRequest, i: int, many: str, n: int) -> str:
    return (
        f"'{req.field}[{i}]' has {many} tokens; this model reads at most {n}: shorten it, "
        'or send "truncate": true to cut it'
    )


def prompt_error(name: str, prompts: dict[str, str]) -> InputError:
    """An unknown prompt_name, in text-embeddings-inference's words: clients parse the list of
    prompts out of it ('Available prompts: [...]', tei-client's prompt_names())."""
    if not prompts:
        return InputError(
            f"prompt_name '{name}' is set but this model has no prompts "
            "(its sentence-transformers configuration defines none)"
        )
    names = ", ".join(f'"{p}"' for p in prompts)
    return InputError(
        f"prompt_name '{name}' was not found in the model's prompts. Available prompts: [{names}]"
    )
