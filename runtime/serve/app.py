"""The HTTP embedding service: the request path, auth, and the one place errors become statuses.

    service = EmbeddingService(Encoder.load(path), ServerConfig())   # service.app is ASGI

    openai.py   POST /v1/embeddings, GET /v1/models (the official `openai` client works unchanged)
    tei.py      POST /embed, /, /similarity, /tokenize, /decode, /embed_all; GET /info
                (text-embeddings-inference's router: tei-client and huggingface_hub's
                InferenceClient work unchanged)
    here        GET /health (200 while the inference worker runs, else 503; never needs a key),
                GET /metrics (Prometheus)

A request is authorized, read (size-capped), parsed (openai.py, tei.py), admitted to the
scheduler's bounded queue, tokenized (inputs.py) and batched with other requests by the
scheduler's worker thread, and answered. The event loop only moves bytes: tokenization and
inference run on the worker, JSON of large bodies and large responses on a small thread pool.
Starlette rather than FastAPI: request parsing is ours, so FastAPI's validation layer would only
add per-request cost. server.py runs it.
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
from typing import Any, Literal, TypeVar

import numpy as np

from ..encoder import Encoder, resolve_prompt
from ..errors import (
    AuthError,
    ConfigError,
    TooLargeError,
    UnavailableError,
    UnknownModelError,
    missing_extra,
)
from ..vectors import l2_normalize
from .config import CLOSE_TIMEOUT_S, ServerConfig
from .inputs import RowContext, prompt_error, token_rows
from .protocol import (
    EmbedRequest,
    NotAvailableError,
    decode_json,
    dumps,
    openai_error,
    status_of,
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
Dialect = Literal["openai", "tei"]  # whose error shape a route answers with
T = TypeVar("T")
log = logging.getLogger("embedrt.service")
JSON = "application/json"
INLINE_FLOATS = 1 << 15  # responses up to this many floats are rendered on the loop (~ms)
INLINE_BYTES = 1 << 16  # bodies up to this size are JSON-decoded on the loop


class EmbeddingService:
    """One encoder behind HTTP. `app` is the ASGI application."""

    def __init__(self, encoder: Encoder, config: ServerConfig):
        from .openai import OpenAIRoutes  # the route modules build on this one
        from .tei import TeiRoutes

        self.encoder = encoder
        self.config = config
        m = encoder.manifest
        self.model = config.model_name or str(m.source.get("model") or Path(encoder.info.path).name)
        if config.prompt_name is not None:
            self.check_prompt(config.prompt_name, ConfigError)
        # the encoder's own tokenizer: it also truncates from the left, decodes and shows tokens
        self.tokenizer = encoder.tokenizer
        self.metrics = ServerMetrics(depth=lambda: self.scheduler.depth)
        self.scheduler = Scheduler(encoder.runner, config.batching, observer=self.metrics)
        self._pool: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the server's, once it starts
        self._waiting: set[QueuedRequest] = set()  # requests waiting for their vectors
        self._draining: UnavailableError | None = None  # set once the shutdown's limit is past
        self._dialects: dict[str, Dialect] = {}
        routes = [
            *self._mount("openai", OpenAIRoutes(self).routes()),
            *self._mount("tei", TeiRoutes(self).routes()),
            Route("/health", self._endpoint(self.health, "openai", auth=False), methods=["GET"]),
            Route("/metrics", self._endpoint(self.prometheus, "openai"), methods=["GET"]),
        ]
        self._routes = {r.path for r in routes}
        handlers = {404: self._http_error, 405: self._http_error}
        starlette = Starlette(routes=routes, exception_handlers=handlers, lifespan=self._lifespan)
        self.app = self.metrics.counting(starlette, self._routes)

    def _mount(self, dialect: Dialect, table: list[tuple[str, Handler, str]]) -> list[Route]:
        for path, _, _ in table:
            self._dialects[path] = dialect
        return [Route(p, self._endpoint(fn, dialect), methods=[m]) for p, fn, m in table]

    async def health(self, request: Request) -> Response:
        if not self.scheduler.alive:
            raise UnavailableError("the inference worker is not running")
        return json_response({"status": "ok"})

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    # ---- the request path, for the route modules ----

    def check_prompt(self, name: str | None, error: type[Exception] | None = None) -> None:
        """A prompt_name the model does not have: InputError in text-embeddings-inference's
        words (or the given error type, for the server's own --prompt-name)."""
        prompts = self.encoder.manifest.prompts
        if name is not None and name not in prompts:
            e = prompt_error(name, prompts)
            raise e if error is None else error(f"--prompt-name: {e}")

    def prompt_of(self, name: str | None) -> str | None:
        """The prompt name a request gets: its own, else the server's --prompt-name, else None
        (the model's default prompt, applied by Encoder.apply_prompt)."""
        self.check_prompt(name)
        return name if name is not None else self.config.prompt_name

    async def read_json(self, request: Request) -> Any:
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
        return await self.offload(decode_json, body)

    async def embed(self, request: Request, req: EmbedRequest) -> tuple[np.ndarray, int] | Response:
        """The request's vectors and its token count (or the empty response for a client that
        left): batched with other requests, then cut to dimensions and normalized."""
        if req.normalize is False and self.encoder.manifest.normalize:
            raise NotAvailableError(
                "'normalize': false is not available: this model's graph L2-normalizes its output"
            )
        prompt = resolve_prompt(self.encoder.manifest, self.prompt_of(req.prompt_name), None)
        ctx = RowContext(
            tokenizer=self.tokenizer,
            prompter=functools.partial(self.encoder.apply_prompt, prompt=prompt),
            prompted=bool(prompt),
            max_length=self.encoder.max_seq_length,
            limits=self.config.limits,
            truncate=self.config.auto_truncate if req.truncate is None else req.truncate,
        )
        if self._draining is not None:
            raise self._draining
        queued = self.scheduler.submit(functools.partial(token_rows, req, ctx))
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
        vecs = self.encoder.truncate(vecs, req.dimensions)
        # After dimensions, as text-embeddings-inference: a shortened vector is unit length again.
        if req.normalize and (req.dimensions is not None or not self.encoder.manifest.normalize):
            vecs = l2_normalize(vecs)
        return vecs, queued.tokens

    async def render(self, vecs: np.ndarray, fn: Callable[..., bytes], *args: object) -> bytes:
        if vecs.size <= INLINE_FLOATS:
            return fn(*args)
        return await self.offload(fn, *args)

    async def offload(self, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) on the I/O pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ---- auth, errors, counting, lifespan ----

    def _endpoint(self, fn: Handler, dialect: Dialect, auth: bool = True) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                if auth and self.config.api_key is not None:
                    self._authorize(request)
                return await fn(request)
            except Exception as e:
                return self._error(e, request.url.path, dialect)

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

    def _error(self, e: Exception, path: str, dialect: Dialect = "openai") -> Response:
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
        if dialect == "tei":
            body = tei_error(status, message)
        elif isinstance(e, UnknownModelError):
            body = openai_error(status, message, param="model", code="model_not_found")
        else:
            body = openai_error(status, message)
        return Response(body, status_code=status, headers=headers, media_type=JSON)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        return self._error(exc, request.url.path, self._dialects.get(request.url.path, "openai"))

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


def json_response(value: Any) -> Response:
    return Response(dumps(value), media_type=JSON)
