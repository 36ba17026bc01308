"""What both wire formats share, with no I/O: the parsed request, its inputs (texts or token
ids), JSON in and out, and which status and body an error gets.

    openai.py   POST /v1/embeddings, GET /v1/models: OpenAI's schema
    tei.py      POST /embed, /, /similarity, /tokenize, /decode, GET /info: text-embeddings-inference's

Parsing turns a body into an EmbedRequest or raises InputError (422), EmptyError (400) or
TooLargeError (413) with a message naming the offending field, as text-embeddings-inference's
router answers them. Error bodies take each dialect's own shape, so the official clients of both
parse them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..config import is_int
from ..errors import (
    AuthError,
    EmbedrtError,
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
Input = str | list[int]  # one input: a text, or the token ids of one (already tokenized) text
Direction = Literal["right", "left"]


class EmptyError(InputError):
    """An empty input list, text or token-id list: 400, as text-embeddings-inference answers
    (error_type "Empty")."""


class NotAvailableError(EmbedrtError):
    """What this model cannot compute (token embeddings, unnormalized output of a graph that
    normalizes): 424, text-embeddings-inference's status for what its backend cannot do."""


@dataclass(frozen=True)
class EmbedRequest:
    """One parsed embedding request: the inputs and how to answer.

    truncate: cut inputs past max_seq_length (True), refuse them with 422 (False), or None for
        the server's --auto-truncate.
    direction: which end truncation cuts ("left" keeps a text's last tokens).
    prompt_name: one of the model's prompts, prepended to texts; None = the server's default
        (--prompt-name), else the model's own default prompt, as sentence-transformers.
    dimensions: keep the first k floats (Matryoshka); None = all.
    normalize: L2-normalize the output (after dimensions, as text-embeddings-inference); None
        leaves the graph's output as it is.
    encoding_format: "float" (JSON numbers) or "base64" (little-endian float32 bytes), OpenAI only.
    """

    inputs: list[Input]
    field: str = "inputs"
    model: str | None = None
    truncate: bool | None = None
    direction: Direction = "right"
    prompt_name: str | None = None
    dimensions: int | None = None
    normalize: bool | None = True
    encoding_format: str = "float"


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


def parse_inputs(doc: dict[str, Any], field: str, limits: Limits, vocab: int) -> list[Input]:
    """doc[field] as inputs: a text, a list of texts, a list of token ids (one input), or a list
    mixing texts and lists of token ids (as text-embeddings-inference takes; OpenAI's API takes
    the unmixed forms). Token ids must lie in [0, vocab): an id past the tokenizer's vocabulary
    is a 422 here, never an ONNX Runtime error in a batch shared with other callers."""
    if field not in doc:
        raise InputError(
            f"'{field}' is required: a string, a list of strings, or lists of token ids"
        )
    value = doc[field]
    if isinstance(value, str):
        check_text(value, f"'{field}'")
        return [value]
    if not isinstance(value, list):
        raise InputError(
            f"'{field}' must be a string, a list of strings or token ids, got {json_type(value)}"
        )
    if not value:
        raise EmptyError(f"'{field}' must not be an empty list")
    if all(is_int(v) for v in value):
        return [token_ids(value, f"'{field}'", vocab)]
    check_count(len(value), field, limits)
    out: list[Input] = []
    for i, item in enumerate(value):
        where = f"'{field}[{i}]'"
        if isinstance(item, str):
            check_text(item, where)
            out.append(item)
        elif isinstance(item, list):
            out.append(token_ids(item, where, vocab))
        else:
            hint = " (a list mixing token ids and texts: send each text's ids as a list)"
            raise InputError(
                f"{where} is {json_type(item)}, expected a string or a list of token ids"
                + (hint if is_int(item) else "")
            )
    return out


def parse_texts(doc: dict[str, Any], field: str, limits: Limits) -> list[str]:
    """doc[field] as texts only: a string or a list of strings."""
    value = doc.get(field)
    if isinstance(value, str):
        check_text(value, f"'{field}'")
        return [value]
    if not isinstance(value, list):
        raise InputError(f"'{field}' must be a string or a list of strings, got {json_type(value)}")
    if not value:
        raise EmptyError(f"'{field}' must not be an empty list")
    check_count(len(value), field, limits)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InputError(f"'{field}[{i}]' is {json_type(item)}, expected a string")
        check_text(item, f"'{field}[{i}]'")
    return value


def token_ids(value: list[Any], where: str, vocab: int) -> list[int]:
    """A list of token ids, each an integer in [0, vocab)."""
    if not value:
        raise EmptyError(f"{where} is an empty list of token ids")
    for i, v in enumerate(value):
        if not is_int(v) or not 0 <= v < vocab:
            got = v if is_int(v) else json_type(v)
            raise InputError(
                f"{where}[{i}] is {got}: token ids are integers from 0 to {vocab - 1} "
                "(this model's vocabulary)"
            )
    return value


def check_count(n: int, field: str, limits: Limits) -> None:
    if n > limits.max_inputs:  # text-embeddings-inference's "batch size" check: 422
        raise InputError(
            f"'{field}' has {n} items; at most {limits.max_inputs} per request "
            "(the server's --max-inputs): split it into several requests"
        )


def check_text(text: str, where: str) -> None:
    """A 400 for an empty string (OpenAI and text-embeddings-inference refuse it too: it has no
    meaning to embed), a 422 for a lone surrogate from a JSON \\ud800-style escape (no tokenizer
    can read it)."""
    if not text:
        raise EmptyError(f"{where} is an empty string; send some text")
    if not utf8_encodable(text):
        raise InputError(
            f"{where} is not valid Unicode: it holds a lone surrogate "
            "(an unpaired \\ud800-\\udfff escape)"
        )


def require_object(doc: Any, what: str = "request body") -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InputError(f"{what} must be a JSON object, got {json_type(doc)}")
    return doc


def get_bool(doc: dict[str, Any], field: str, default: bool) -> bool:
    value = doc.get(field, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InputError(f"'{field}' must be true or false, got {json_type(value)}")
    return value


def get_optional_bool(doc: dict[str, Any], field: str) -> bool | None:
    value = doc.get(field)
    if value is not None and not isinstance(value, bool):
        raise InputError(f"'{field}' must be true, false or null, got {json_type(value)}")
    return value


def get_str(doc: dict[str, Any], field: str) -> str | None:
    value = doc.get(field)
    if value is not None and not isinstance(value, str):
        raise InputError(f"'{field}' must be a string, got {json_type(value)}")
    return value


def get_dimensions(doc: dict[str, Any], dim: int) -> int | None:
    """'dimensions': None, or an integer in [1, dim] (the model's output size)."""
    value = doc.get("dimensions")
    if value is not None and (not is_int(value) or not 1 <= value <= dim):
        raise InputError(
            f"'dimensions' must be an integer from 1 to {dim} (this model's output size), "
            f"got {value!r}"
        )
    return value


def status_of(e: Exception) -> tuple[int, dict[str, str]]:
    """The HTTP status and headers an error is answered with (500: not the client's doing)."""
    if isinstance(e, AuthError):
        return 401, {"WWW-Authenticate": "Bearer"}
    if isinstance(e, TooLargeError):
        return 413, {}
    if isinstance(e, EmptyError):
        return 400, {}
    if isinstance(e, NotAvailableError):
        return 424, {}
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
        400: "invalid_request_error",
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
        400: "Empty",
        401: "Unauthorized",
        404: "Validation",
        405: "Validation",
        413: "Validation",
        422: "Validation",
        429: "Overloaded",
        503: "Unhealthy",
    }.get(status, "Backend")  # 424 and 500: what the backend could not do
    return dumps({"error": message, "error_type": kind})


def float32_rows(vectors: np.ndarray) -> np.ndarray:
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
