"""text-embeddings-inference's API for an embedding model, schema and routes, as its router
(router/src/http/server.rs) serves them: tei-client and huggingface_hub's InferenceClient work
unchanged.

    POST /embed         {"inputs": str | [str] | [int] | [[int]] | mixed, "truncate"?: bool,
                         "truncation_direction"?: "Right" | "Left", "prompt_name"?: str,
                         "normalize"?: true, "dimensions"?: int}  ->  [[float, ...], ...]
    POST /similarity    {"inputs": {"source_sentence": str, "sentences": [str]}, "parameters"?:
                         {"truncate", "truncation_direction", "prompt_name"}}  ->  [cosine, ...]
    POST /, /invocations  /similarity for a body shaped like one, else /embed (TEI picks one
                         by its TASK variable; one server here answers both clients)
    POST /tokenize      {"inputs": str | [str], "add_special_tokens"?: true, "prompt_name"?}
                         ->  [[{"id", "text", "special", "start", "stop"}, ...], ...]
    POST /decode        {"ids": [int] | [[int]], "skip_special_tokens"?: true}  ->  [str, ...]
    POST /embed_all     424: the graph outputs pooled vectors only (docs/decisions.md)
    GET  /info          TEI's Info, plus embedrt's own fields

Errors are {"error": str, "error_type": "Empty" | "Validation" | "Overloaded" | "Backend" |
"Unhealthy"} with TEI's statuses: 400 empty, 422 validation (too many inputs, a text too long
with truncate off), 424 what this model cannot compute, 429 overloaded, 413 a body too large.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..errors import InputError, json_type
from ..vectors import cosine_similarity
from .app import JSON, EmbeddingService, Handler, json_response
from .config import Limits
from .protocol import (
    Direction,
    EmbedRequest,
    EmptyError,
    NotAvailableError,
    check_count,
    check_text,
    dumps,
    float32_rows,
    get_bool,
    get_dimensions,
    get_optional_bool,
    get_str,
    parse_inputs,
    parse_texts,
    require_object,
    token_ids,
)

# TEI's pooling names for the manifest's sentence-transformers ones it shares.
POOLING_NAMES = {"lasttoken": "last_token"}
# TEI refuses texts of more characters than this many per token of max_input_length before
# tokenizing them (its MAX_CHAR_MULTIPLIER): /tokenize does not truncate, so this bounds its work.
CHARS_PER_TOKEN = 250


def parse_direction(doc: dict[str, Any]) -> Direction:
    value = doc.get("truncation_direction")
    if value is None:
        return "right"
    if not isinstance(value, str) or value.lower() not in ("left", "right"):
        raise InputError(f'\'truncation_direction\' must be "Right" or "Left", got {value!r}')
    return "left" if value.lower() == "left" else "right"


def parse_embed(doc: Any, limits: Limits, dim: int, vocab: int) -> EmbedRequest:
    """A /embed request (already JSON-decoded). Fields TEI does not know are ignored, as TEI
    does (InferenceClient sends "encoding_format" along)."""
    doc = require_object(doc)
    return EmbedRequest(
        inputs=parse_inputs(doc, "inputs", limits, vocab),
        truncate=get_optional_bool(doc, "truncate"),
        direction=parse_direction(doc),
        prompt_name=get_str(doc, "prompt_name"),
        dimensions=get_dimensions(doc, dim),
        normalize=get_bool(doc, "normalize", True),
    )


def parse_similarity(doc: Any, limits: Limits) -> EmbedRequest:
    """A /similarity request: the source sentence first, then the others; no normalization
    asked for (cosine does not need it)."""
    inputs = require_object(require_object(doc).get("inputs"), "'inputs'")
    source = inputs.get("source_sentence")
    if not isinstance(source, str):
        raise InputError(f"'inputs.source_sentence' must be a string, got {json_type(source)}")
    check_text(source, "'inputs.source_sentence'")
    sentences = inputs.get("sentences")
    if not isinstance(sentences, list):
        raise InputError(
            f"'inputs.sentences' must be a list of strings, got {json_type(sentences)}"
        )
    if not sentences:
        raise EmptyError("'inputs.sentences' cannot be empty")
    check_count(len(sentences) + 1, "inputs.sentences' and 'inputs.source_sentence", limits)
    texts = parse_texts({"inputs.sentences": sentences}, "inputs.sentences", limits)
    params = doc.get("parameters")
    params = {} if params is None else require_object(params, "'parameters'")
    return EmbedRequest(
        inputs=[source, *texts],
        truncate=get_optional_bool(params, "truncate"),
        direction=parse_direction(params),
        prompt_name=get_str(params, "prompt_name"),
        normalize=None,
    )


def tei_body(vectors: np.ndarray) -> bytes:
    """The JSON body of a TEI /embed response: one list of floats per input."""
    return dumps(float32_rows(vectors))


def token_details(text: str, encoding: Any) -> list[dict[str, Any]]:
    """TEI's SimpleTokens of one encoding: special tokens by their token string, the others by
    the slice of the text they came from, with start and stop as UTF-8 byte offsets."""
    byte_at = None if text.isascii() else np.cumsum([0] + [len(c.encode()) for c in text])
    out = []
    for id_, tok, special, (start, stop) in zip(
        encoding.ids, encoding.tokens, encoding.special_tokens_mask, encoding.offsets, strict=True
    ):
        if special:
            out.append({"id": id_, "text": tok, "special": True, "start": None, "stop": None})
            continue
        b0, b1 = (start, stop) if byte_at is None else (int(byte_at[start]), int(byte_at[stop]))
        out.append({"id": id_, "text": text[start:stop], "special": False, "start": b0, "stop": b1})
    return out


class TeiRoutes:
    """The text-embeddings-inference routes of one EmbeddingService."""

    def __init__(self, service: EmbeddingService):
        self.service = service

    def routes(self) -> list[tuple[str, Handler, str]]:
        return [
            ("/embed", self.embed, "POST"),
            ("/", self.root, "POST"),
            ("/invocations", self.root, "POST"),
            ("/similarity", self.similarity, "POST"),
            ("/tokenize", self.tokenize, "POST"),
            ("/decode", self.decode, "POST"),
            ("/embed_all", self.embed_all, "POST"),
            ("/info", self.info, "GET"),
        ]

    async def embed(self, request: Request, doc: Any = None) -> Response:
        s = self.service
        doc = await s.read_json(request) if doc is None else doc
        req = parse_embed(doc, s.config.limits, s.encoder.dim, s.tokenizer.vocab_size)
        out = await s.embed(request, req)
        if isinstance(out, Response):
            return out
        return Response(await s.render(out[0], tei_body, out[0]), media_type=JSON)

    async def root(self, request: Request) -> Response:
        doc = await self.service.read_json(request)
        if isinstance(doc, dict) and isinstance(doc.get("inputs"), dict):
            return await self.similarity(request, doc)
        return await self.embed(request, doc)

    async def similarity(self, request: Request, doc: Any = None) -> Response:
        s = self.service
        doc = await s.read_json(request) if doc is None else doc
        out = await s.embed(request, parse_similarity(doc, s.config.limits))
        if isinstance(out, Response):
            return out
        vecs = out[0]
        return Response(dumps(cosine_similarity(vecs[:1], vecs[1:])[0]), media_type=JSON)

    async def tokenize(self, request: Request) -> Response:
        s = self.service
        doc = require_object(await s.read_json(request))
        texts = parse_texts(doc, "inputs", s.config.limits)
        special = get_bool(doc, "add_special_tokens", True)
        name = s.prompt_of(get_str(doc, "prompt_name"))
        limit = CHARS_PER_TOKEN * s.encoder.max_seq_length
        for i, t in enumerate(texts):
            if len(t) > limit:
                raise InputError(
                    f"'inputs[{i}]' must have less than {limit} characters, got {len(t)}"
                )

        def work() -> bytes:
            prompted = s.encoder.apply_prompt(texts, prompt_name=name)
            encodings = s.tokenizer.encodings(prompted, add_special_tokens=special)
            # the offsets are into the text the tokenizer saw: lowered, for a do_lower_case
            # model ("İ".lower() is two characters)
            seen = [t.lower() for t in prompted] if s.tokenizer.lowercase else prompted
            return dumps([token_details(t, e) for t, e in zip(seen, encodings, strict=True)])

        return Response(await s.offload(work), media_type=JSON)

    async def decode(self, request: Request) -> Response:
        s = self.service
        doc = require_object(await s.read_json(request))
        ids = doc.get("ids")
        vocab = s.tokenizer.vocab_size
        if not isinstance(ids, list):
            raise InputError(f"'ids' must be a list of token ids or of lists, got {json_type(ids)}")
        if ids and all(isinstance(row, list) for row in ids):
            check_count(len(ids), "ids", s.config.limits)
            rows = [token_ids(row, f"'ids[{i}]'", vocab) for i, row in enumerate(ids)]
        else:
            rows = [token_ids(ids, "'ids'", vocab)]
        skip = get_bool(doc, "skip_special_tokens", True)
        return json_response(await s.offload(s.tokenizer.decode, rows, skip))

    async def embed_all(self, request: Request) -> Response:
        raise NotAvailableError(
            "embed_all is not available: this artifact's graph outputs one pooled vector per "
            "input (sentence_embedding), not the token embeddings; use /embed"
        )

    async def info(self, request: Request) -> Response:
        s = self.service
        i, b, m = s.encoder.info, s.config.batching, s.encoder.manifest
        pooling = POOLING_NAMES.get(m.pooling, m.pooling)
        dtype = {"fp32": "float32", "fp16": "float16"}.get(i.precision, i.precision)
        return json_response(
            {
                # text-embeddings-inference's Info, field for field
                "model_id": s.model,
                "model_sha": m.source.get("weights_sha256"),
                "model_dtype": dtype,
                "served_model_name": s.model,
                "model_type": {"embedding": {"pooling": pooling}},
                "max_concurrent_requests": b.max_queue,
                "max_input_length": s.encoder.max_seq_length,
                "max_batch_tokens": b.max_batch_tokens,
                "max_batch_requests": b.max_batch_requests,
                "max_client_batch_size": s.config.limits.max_inputs,
                "auto_truncate": s.config.auto_truncate,
                "tokenization_workers": 1,  # the scheduler's one worker thread tokenizes
                "version": __version__,
                "sha": None,
                "docker_label": None,
                # embedrt's own
                "dim": m.dim,
                "normalize": m.normalize,
                "prompts": sorted(m.prompts),
                "default_prompt_name": s.config.prompt_name or m.default_prompt_name,
                "device": i.device,
                "precision": i.precision,
                "variant": i.variant,
                "active_providers": list(i.active_providers),
                "streams": i.streams,
                "max_wait_ms": b.max_wait_ms,
                "batching": b.batching,
                "max_body_bytes": s.config.limits.max_body_bytes,
            }
        )
