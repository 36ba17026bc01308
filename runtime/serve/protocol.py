"""The HTTP service's wire formats: request parsing and response bodies, with no I/O.

Two dialects over one model:

    POST /v1/embeddings   OpenAI: {"input": str | [str], "model": str, "encoding_format":
                          "float" | "base64", "dimensions"?: int}  ->  {"object": "list", "data":
                          [{"object": "embedding", "index": i, "embedding": ...}], "model",
                          "usage": {"prompt_tokens", "total_tokens"}}
    POST /embed           text-embeddings-inference: {"inputs": str | [str], "truncate"?: bool,
                          "normalize"?: bool}  ->  [[float, ...], ...]

Parsing turns a body into an EmbedRequest or raises InputError (422) / TooLargeError (413) with a
message naming the offending field. Error bodies take each dialect's own shape, so the official
clients of both parse them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import is_int
from ..errors import (
    AuthError,
    InputError,
    OverloadedError,
    TooLargeError,
    UnavailableError,
    UnknownModelError,
    json_type,
    missing_extra,
)
from ..tokenizer import utf8_encodable
from .config import Limits

try:
    import orjson
except ImportError:
    raise missing_extra("orjson", "serve") from None

ENCODING_FORMATS = ("float", "base64")


@dataclass(frozen=True)
class EmbedRequest:
    """One parsed request: the texts and how to answer.

    truncate: cut texts past max_seq_length (True), or refuse them with 413 (False).
    encoding_format: "float" (JSON numbers) or "base64" (little-endian float32 bytes), OpenAI only.
    normalize: L2-normalize the output (TEI's option; the graph usually does it already).
    """

    texts: list[str]
    model: str | None = None
    truncate: bool = True
    encoding_format: str = "float"
    normalize: bool = True


def decode_json(body: bytes) -> Any:
    """The JSON value of a request body; InputError (422) if it is not UTF-8 JSON."""
    try:
        return json.loads(body)
    except RecursionError:  # a few thousand nested brackets exhaust the parser's stack
        raise InputError(
            "request body is nested too deeply to parse; send a flat JSON object"
        ) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, and an integer of > 4300 digits
        raise InputError(f"request body is not valid JSON: {e}") from None


def parse_openai(doc: Any, limits: Limits, dim: int) -> EmbedRequest:
    """An OpenAI embeddings request (already JSON-decoded)."""
    _require_object(doc)
    texts = _texts(doc, "input", limits)
    model = doc.get("model")
    if model is not None and not isinstance(model, str):
        raise InputError(f"'model' must be a string, got {json_type(model)}")
    fmt = doc.get("encoding_format", "float")
    if fmt is None:
        fmt = "float"
    if fmt not in ENCODING_FORMATS:
        raise InputError(
            f"'encoding_format' must be one of {', '.join(ENCODING_FORMATS)}, got {fmt!r}"
        )
    dims = doc.get("dimensions")
    if dims is not None and (not is_int(dims) or dims != dim):
        # The artifact's dimension is fixed; silently returning another size would break callers.
        raise InputError(
            f"'dimensions' must be {dim} (this model's fixed output size), got {dims!r}"
        )
    truncate = _bool(doc, "truncate", True)  # an extension; OpenAI's own API has no such field
    return EmbedRequest(texts=texts, model=model, truncate=truncate, encoding_format=fmt)


def parse_tei(doc: Any, limits: Limits) -> EmbedRequest:
    """A text-embeddings-inference /embed request (already JSON-decoded)."""
    _require_object(doc)
    texts = _texts(doc, "inputs", limits)
    return EmbedRequest(
        texts=texts, truncate=_bool(doc, "truncate", True), normalize=_bool(doc, "normalize", True)
    )


def openai_body(vectors: np.ndarray, model: str, tokens: int, encoding_format: str) -> bytes:
    """The JSON body of an OpenAI embeddings response."""
    vectors = _float32_rows(vectors)
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


def tei_body(vectors: np.ndarray) -> bytes:
    """The JSON body of a TEI /embed response: one list of floats per input."""
    return dumps(_float32_rows(vectors))


def status_of(e: Exception) -> tuple[int, dict[str, str]]:
    """The HTTP status and headers an error is answered with (500: not the client's doing)."""
    if isinstance(e, AuthError):
        return 401, {"WWW-Authenticate": "Bearer"}
    if isinstance(e, TooLargeError):
        return 413, {}
    if isinstance(e, InputError):
        return 422, {}
    if isinstance(e, UnknownModelError):
        return 404, {}
    if isinstance(e, (OverloadedError, UnavailableError)):  # both pass: retry shortly
        return (429 if isinstance(e, OverloadedError) else 503), {"Retry-After": "1"}
    return 500, {}


def openai_error(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> bytes:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    kind = {
        401: "authentication_error",
        413: "invalid_request_error",
        422: "invalid_request_error",
        404: "invalid_request_error",
        405: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error")
    if code is None:
        codes = {401: "invalid_api_key", 429: "rate_limit_exceeded", 413: "request_too_large"}
        code = codes.get(status)
    return dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def tei_error(status: int, message: str) -> bytes:
    """text-embeddings-inference's error shape: {"error": str, "error_type": str}."""
    kind = {
        401: "Unauthorized",
        413: "Validation",
        422: "Validation",
        429: "Overloaded",
        503: "Unhealthy",
    }.get(status, "Backend")
    return dumps({"error": message, "error_type": kind})


def _texts(doc: dict[str, Any], field: str, limits: Limits) -> list[str]:
    if field not in doc:
        raise InputError(f"'{field}' is required: a string or a list of strings")
    value = doc[field]
    if isinstance(value, str):
        _check_text(value, f"'{field}'")
        return [value]
    if not isinstance(value, list):
        raise InputError(f"'{field}' must be a string or a list of strings, got {json_type(value)}")
    if not value:
        raise InputError(f"'{field}' must not be an empty list")
    if len(value) > limits.max_inputs:
        raise TooLargeError(
            f"'{field}' has {len(value)} items; at most {limits.max_inputs} per request: "
            "split it into several requests"
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            hint = (
                " (token-id input is not supported; send text)"
                if is_int(item) or isinstance(item, list)
                else ""
            )
            raise InputError(f"'{field}[{i}]' is {json_type(item)}, expected a string{hint}")
        _check_text(item, f"'{field}[{i}]'")
    return value


def _check_text(text: str, where: str) -> None:
    """A 422 naming the text before it is queued: an empty string (OpenAI and
    text-embeddings-inference refuse it too: it has no meaning to embed), or a lone surrogate
    from a JSON \\ud800-style escape (no tokenizer can read it)."""
    if not text:
        raise InputError(f"{where} is an empty string; send some text")
    if not utf8_encodable(text):
        raise InputError(
            f"{where} is not valid Unicode: it holds a lone surrogate "
            "(an unpaired \\ud800-\\udfff escape)"
        )


def _require_object(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise InputError(f"request body must be a JSON object, got {json_type(doc)}")


def _bool(doc: dict[str, Any], field: str, default: bool) -> bool:
    value = doc.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(f"'{field}' must be true or false, got {json_type(value)}")
    return value


def _float32_rows(vectors: np.ndarray) -> np.ndarray:
    """The vectors as C-contiguous little-endian float32, checked finite: ValueError (a 500: a
    broken model, not the client's fault) on NaN or infinity, which JSON cannot carry."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    if not np.isfinite(vectors).all():
        raise ValueError("the model produced NaN or infinite values")
    return vectors


def dumps(value: Any) -> bytes:
    """Compact JSON, for every body the service sends. orjson writes each float32 as the
    shortest decimal that reads back as the same float32 (as text-embeddings-inference does),
    far faster than json.dumps of the float64 widening and half its bytes (docs/decisions.md)."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
