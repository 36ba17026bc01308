"""OpenAI's embeddings API: POST /v1/embeddings and GET /v1/models, schema and routes.

    {"input": str | [str] | [int] | [[int]], "model"?: str, "encoding_format"?: "float" |
     "base64", "dimensions"?: int, "user"?: str}
    ->  {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}],
         "model": served name, "usage": {"prompt_tokens", "total_tokens"}}

As OpenAI (and text-embeddings-inference's OpenAI route): vectors are unit length, also when
`dimensions` shortens them; a `model` other than the served one is a 404 model_not_found (OpenAI's
answer; text-embeddings-inference only logs it); `user` is accepted and not used. Token-id inputs
are this model's token ids (GET /tokenize gives them), not OpenAI's tokenizer's. Two extensions:
"truncate" (default: the server's --auto-truncate) and the server's --prompt-name.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InputError, UnknownModelError
from .app import JSON, EmbeddingService, Handler, json_response
from .config import Limits
from .protocol import (
    ENCODING_FORMATS,
    EmbedRequest,
    dumps,
    float32_rows,
    get_dimensions,
    get_optional_bool,
    get_str,
    parse_inputs,
    require_object,
)


def parse_openai(doc: Any, limits: Limits, dim: int, vocab: int) -> EmbedRequest:
    """An OpenAI embeddings request (already JSON-decoded)."""
    doc = require_object(doc)
    inputs = parse_inputs(doc, "input", limits, vocab)
    model = get_str(doc, "model")
    get_str(doc, "user")  # accepted, as OpenAI's API has it; nothing here is per user
    fmt = doc.get("encoding_format") or "float"
    if fmt not in ENCODING_FORMATS:
        raise InputError(
            f"'encoding_format' must be one of {', '.join(ENCODING_FORMATS)}, got {fmt!r}"
        )
    return EmbedRequest(
        inputs=inputs,
        field="input",
        model=model,
        truncate=get_optional_bool(doc, "truncate"),  # an extension; OpenAI has no such field
        dimensions=get_dimensions(doc, dim),
        normalize=True,
        encoding_format=fmt,
    )


def openai_body(vectors: np.ndarray, model: str, tokens: int, encoding_format: str) -> bytes:
    """The JSON body of an OpenAI embeddings response."""
    vectors = float32_rows(vectors)
    if encoding_format == "base64":
        # The openai client decodes base64 as little-endian float32: that is the wire format.
        embeddings: Any = [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors]
    else:
        embeddings = vectors  # rows rendered by orjson straight from the array
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(embeddings)]
    return dumps(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


class OpenAIRoutes:
    """The OpenAI routes of one EmbeddingService."""

    def __init__(self, service: EmbeddingService):
        self.service = service

    def routes(self) -> list[tuple[str, Handler, str]]:
        return [("/v1/embeddings", self.embeddings, "POST"), ("/v1/models", self.models, "GET")]

    async def embeddings(self, request: Request) -> Response:
        s = self.service
        req = parse_openai(
            await s.read_json(request), s.config.limits, s.encoder.dim, s.tokenizer.vocab_size
        )
        if req.model is not None and req.model != s.model:  # as OpenAI answers: 404
            raise UnknownModelError(
                f"The model '{req.model}' does not exist here: this server serves "
                f"'{s.model}' (GET /v1/models)"
            )
        out = await s.embed(request, req)
        if isinstance(out, Response):
            return out
        vecs, tokens = out
        body = await s.render(vecs, openai_body, vecs, s.model, tokens, req.encoding_format)
        return Response(body, media_type=JSON)

    async def models(self, request: Request) -> Response:
        data = [{"id": self.service.model, "object": "model", "created": 0, "owned_by": "embedrt"}]
        return json_response({"object": "list", "data": data})
