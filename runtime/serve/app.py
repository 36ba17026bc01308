"""The HTTP embedding service: routes, auth, limits and the one place errors become statuses.

    service = EmbeddingService(Encoder.load(path), ServerConfig())   # service.app is ASGI

    POST /v1/embeddings   OpenAI-compatible (the official `openai` client works unchanged)
    POST /embed           text-embeddings-inference style
    GET  /v1/models       the one model served, as OpenAI lists models
    GET  /health          200 while the inference worker runs, else 503 (never needs a key)
    GET  /info            model, device, limits
    GET  /metrics         Prometheus

A request is authorized, read (size-capped), parsed (protocol.py), admitted to the scheduler's
bounded queue, tokenized and batched with other requests by the scheduler's worker thread, and
answered. The event loop only moves bytes: tokenization and inference run on the worker, JSON of
large bodies and large responses on a small thread pool. Starlette rather than FastAPI: request
parsing is ours (protocol.py), so FastAPI's validation layer would only add per-request cost.
server.py runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..encoder import Encoder
from ..errors import (
    AuthError,
    InputError,
    TooLargeError,
    UnavailableError,
    UnknownModelError,
    missing_extra,
)
from ..tokenizer import HEAD_SLACK_TOKENS
from ..vectors import l2_normalize
from .config import CLOSE_TIMEOUT_S, ServerConfig
from .protocol import (
    EmbedRequest,
    decode_json,
    dumps,
    openai_body,
    openai_error,
    parse_openai,
    parse_tei,
    status_of,
    tei_body,
    tei_error,
)
from .queue import Request as QueuedRequest
from .scheduler import Scheduler

try:
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import Response
    from starlette.routing import Route
except ImportError:
    raise missing_extra("starlette", "serve") from None

from .metrics import CLIENT_GONE, CONTENT_TYPE, ServerMetrics  # noqa: E402  (after the extra's check)

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("embedrt.service")
JSON = "application/json"
INLINE_FLOATS = 1 << 15  # responses up to this many floats are rendered on the loop (~ms)
INLINE_BYTES = 1 << 16  # bodies up to this size are JSON-decoded on the loop


class EmbeddingService:
    """One encoder behind HTTP. `app` is the ASGI application."""

    def __init__(self, encoder: Encoder, config: ServerConfig):
        self.encoder = encoder
        self.config = config
        m = encoder.manifest
        self.model = config.model_name or str(m.source.get("model") or Path(encoder.info.path).name)
        self.metrics = ServerMetrics(depth=lambda: self.scheduler.depth)
        self.scheduler = Scheduler(encoder.runner, config.batching, observer=self.metrics)
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the server's, once it starts
        self._waiting: set[QueuedRequest] = set()  # requests waiting for their vectors
        self._draining: UnavailableError | None = None  # set once the shutdown's limit is past
        routes = [
            Route("/v1/embeddings", self._endpoint(self.openai), methods=["POST"]),
            Route("/embed", self._endpoint(self.tei), methods=["POST"]),
            Route("/v1/models", self._endpoint(self.models), methods=["GET"]),
            Route("/health", self._endpoint(self.health, auth=False), methods=["GET"]),
            Route("/info", self._endpoint(self.info), methods=["GET"]),
            Route("/metrics", self._endpoint(self.prometheus), methods=["GET"]),
        ]
        self._routes = {r.path for r in routes}
        handlers = {404: self._http_error, 405: self._http_error}
        starlette = Starlette(routes=routes, exception_handlers=handlers, lifespan=self._lifespan)
        self.app = self.metrics.counting(starlette, self._routes)

    # ---- routes ----

    async def openai(self, request: Request) -> Response:
        req = parse_openai(await self._json(request), self.config.limits, self.encoder.dim)
        if req.model is not None and req.model != self.model:  # as OpenAI answers: 404
            raise UnknownModelError(
                f"The model '{req.model}' does not exist here: this server serves "
                f"'{self.model}' (GET /v1/models)"
            )
        out = await self._embed(request, req, "input")
        if isinstance(out, Response):
            return out
        vecs, tokens = out
        body = await self._render(vecs, openai_body, vecs, self.model, tokens, req.encoding_format)
        return Response(body, media_type=JSON)

    async def tei(self, request: Request) -> Response:
        req = parse_tei(await self._json(request), self.config.limits)
        out = await self._embed(request, req, "inputs")
        if isinstance(out, Response):
            return out
        return Response(await self._render(out[0], tei_body, out[0]), media_type=JSON)

    async def models(self, request: Request) -> Response:
        data = [{"id": self.model, "object": "model", "created": 0, "owned_by": "embedrt"}]
        return _json_response({"object": "list", "data": data})

    async def health(self, request: Request) -> Response:
        if not self.scheduler.alive:
            raise UnavailableError("the inference worker is not running")
        return _json_response({"status": "ok"})

    async def info(self, request: Request) -> Response:
        i, b, m = self.encoder.info, self.config.batching, self.encoder.manifest
        return _json_response(
            {
                "model_id": self.model,
                "model_dtype": i.precision,
                "model_type": "embedding",
                "dim": m.dim,
                "max_input_length": m.max_seq_length,
                "pooling": m.pooling,
                "normalize": m.normalize,
                "device": i.device,
                "variant": i.variant,
                "active_providers": list(i.active_providers),
                "streams": i.streams,
                "max_batch_tokens": b.max_batch_tokens,
                "max_batch_requests": b.max_batch_requests,
                "max_wait_ms": b.max_wait_ms,
                "max_concurrent_requests": b.max_queue,
                "batching": b.batching,
                "max_client_batch_size": self.config.limits.max_inputs,
                "max_body_bytes": self.config.limits.max_body_bytes,
                "auto_truncate": True,
                "version": __version__,
            }
        )

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    # ---- the request path ----

    async def _json(self, request: Request) -> Any:
        limit = self.config.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLargeError(f"request body is {declared} bytes; at most {limit} are accepted")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLargeError(f"request body is over {limit} bytes; split the request")
            chunks.append(chunk)
        body = b"".join(chunks)
        if size <= INLINE_BYTES:
            return decode_json(body)
        return await asyncio.get_running_loop().run_in_executor(self._pool, decode_json, body)

    async def _embed(
        self, request: Request, req: EmbedRequest, field_name: str
    ) -> tuple[np.ndarray, int] | Response:
        if not req.normalize and self.encoder.manifest.normalize:
            raise InputError(
                "'normalize': false is not available: this model's graph L2-normalizes its output"
            )
        if self._draining is not None:
            raise self._draining
        queued = self.scheduler.submit(functools.partial(self._tokenize, req, field_name))
        fut = queued.future
        # The client leaving cancels the wait for it (cheaper than asyncio.wait on both).
        gone = asyncio.get_running_loop().create_task(_disconnected(request))
        gone.add_done_callback(lambda _: fut.cancel())
        self._waiting.add(queued)
        try:
            vecs = await fut  # or the request's own error: a text over the limit with truncate off
        except asyncio.CancelledError:
            self.scheduler.cancel(queued)  # the client left, or this task was cancelled: drop it
            if gone.done() and not gone.cancelled():
                return Response(status_code=CLIENT_GONE)
            raise
        finally:
            gone.cancel()
            self._waiting.discard(queued)
        if req.normalize and not self.encoder.manifest.normalize:
            vecs = l2_normalize(vecs)
        return vecs, queued.tokens

    def _tokenize(self, req: EmbedRequest, field_name: str) -> list[list[int]]:
        """Token rows (on the scheduler's worker); with truncate off, 413 for a text past
        max_seq_length."""
        rows = self.encoder.tokenize(req.texts)
        limit = self.encoder.manifest.max_seq_length
        # A row at the limit may have been cut: count that text's tokens without truncation.
        at_limit = [] if req.truncate else [i for i, r in enumerate(rows) if len(r) >= limit]
        if at_limit:
            counts = self.encoder.count_tokens([req.texts[i] for i in at_limit], truncate=False)
            for i, n in zip(at_limit, counts, strict=True):
                if n > limit:
                    many = f"at least {n}" if n >= limit + HEAD_SLACK_TOKENS else str(n)
                    raise TooLargeError(
                        f"'{field_name}[{i}]' has {many} tokens; this model reads at most "
                        f'{limit}: shorten it, or send "truncate": true to cut it'
                    )
        budget = self.config.limits.max_request_tokens
        if budget is not None and (total := sum(map(len, rows))) > budget:
            raise TooLargeError(
                f"'{field_name}' holds {total} tokens; this server takes at most {budget} per "
                "request: split it into smaller requests"
            )
        return rows

    async def _render(self, vecs: np.ndarray, fn: Callable[..., bytes], *args: object) -> bytes:
        if vecs.size <= INLINE_FLOATS:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ---- auth, errors, counting, lifespan ----

    def _endpoint(self, fn: Handler, auth: bool = True) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                if auth and self.config.api_key is not None:
                    self._authorize(request)
                return await fn(request)
            except Exception as e:
                return self._error(e, request.url.path)

        return endpoint

    def _authorize(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("missing API key: send the header 'Authorization: Bearer <key>'")
        key = (self.config.api_key or "").encode()  # called only when the server has a key
        # Headers arrive as latin-1 (HTTP's own charset): their bytes are the client's bytes,
        # so a UTF-8 key sent as UTF-8 matches.
        if not hmac.compare_digest(token.strip().encode("latin-1"), key):
            raise AuthError("invalid API key")

    def _error(self, e: Exception, path: str) -> Response:
        """The one place an exception becomes an HTTP status and a JSON error body."""
        if isinstance(e, ClientDisconnect):
            return Response(status_code=CLIENT_GONE)
        status, headers = status_of(e)
        if isinstance(e, HTTPException):
            status = e.status_code
        elif status == 500:
            ref = uuid.uuid4().hex[:12]
            log.error("error %s on %s: %s: %s", ref, path, type(e).__name__, e, exc_info=e)
            e = Exception(f"internal server error (reference {ref} in the server log)")
        message = e.detail if isinstance(e, HTTPException) else str(e)
        if path == "/embed":
            body = tei_error(status, message)
        elif isinstance(e, UnknownModelError):
            body = openai_error(status, message, param="model", code="model_not_found")
        else:
            body = openai_error(status, message)
        return Response(body, status_code=status, headers=headers, media_type=JSON)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        return self._error(exc, request.url.path)

    def drain(self, seconds: float) -> None:
        """A shutdown began (a signal; safe to call from its handler): every request still
        waiting after `seconds` is answered 503 with Retry-After, in its route's JSON, and
        dropped from the queue, instead of being cut off by the server with a plain-text 500."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.call_later, seconds, self._cut_off)

    def _cut_off(self) -> None:
        why = UnavailableError("the server is shutting down; retry this request")
        self._draining = why  # and so is every request that comes after
        for queued in list(self._waiting):
            self.scheduler.cancel(queued)
            if not queued.future.done():
                queued.future.set_exception(why)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(self.config.io_threads, thread_name_prefix="embedrt-io")
        self.scheduler.start()
        try:
            yield
        finally:
            # uvicorn has answered every accepted request, or after its grace period cancelled
            # the rest: off the loop, so their tasks can still run `finally: scheduler.cancel()`.
            timeout = min(self.config.graceful_timeout_s, CLOSE_TIMEOUT_S)
            await asyncio.to_thread(self.scheduler.close, timeout)
            self._pool.shutdown(wait=True)


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has already been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _json_response(value: Any) -> Response:
    return Response(dumps(value), media_type=JSON)
