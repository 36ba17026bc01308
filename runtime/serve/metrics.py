"""The HTTP service's Prometheus metrics, in a registry of their own (one per app, not global).

embedrt_requests_total{route,status}      requests answered, by route and HTTP status
embedrt_request_seconds{route}            end-to-end latency inside the server
embedrt_queue_depth                       requests admitted and not yet taken by the worker
embedrt_queue_seconds                     admission -> start of the request's inference
embedrt_inference_seconds                 one batching round's inference
embedrt_batch_size                        rows (texts) per round
embedrt_batch_tokens                      real tokens per round
embedrt_tokens_total{kind=real|padded}    tokens run through the model, and their padded area
embedrt_padding_efficiency                real / padded tokens so far (1.0 = no padding)
embedrt_dropped_requests_total            requests dropped before inference (client gone)
embedrt_cpu_seconds_total{work}           CPU time of the threads that run inference and
                                          tokenization (see SchedulerObserver.cpu for what
                                          it leaves out)
embedrt_runs_total{threads=one|all}       inference runs on one stream's thread, or alone
                                          on all of them (partly on ONNX Runtime's pool)
process_cpu_seconds_total, process_*      the whole process (prometheus_client's collector)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import missing_extra

try:
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        ProcessCollector,
        generate_latest,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError:
    raise missing_extra("prometheus-client and starlette", "serve") from None

# Latency buckets from 1 ms to 30 s: a short sentence's inference on a GPU up to a full queue
# of long texts on two CPU cores.
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
ROWS = tuple(float(2**k) for k in range(12))  # 1 .. 2048 rows
TOKENS = tuple(float(2**k) for k in range(3, 18))  # 8 .. 131072 tokens
CONTENT_TYPE = CONTENT_TYPE_LATEST
CLIENT_GONE = 499  # nginx's "client closed request": what a dropped request is counted as


class ServerMetrics:
    """Every metric of one server; also the scheduler's observer (scheduler.SchedulerObserver)."""

    def __init__(self, depth: Callable[[], int]):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "embedrt_requests",
            "Requests answered, by route and HTTP status",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "embedrt_request_seconds",
            "Request latency inside the server",
            ["route"],
            buckets=SECONDS,
            registry=r,
        )
        Gauge(
            "embedrt_queue_depth",
            "Requests admitted and not yet taken by the inference worker",
            registry=r,
        ).set_function(depth)
        self.queue = Histogram(
            "embedrt_queue_seconds",
            "Admission to start of inference, per request",
            buckets=SECONDS,
            registry=r,
        )
        self.inference = Histogram(
            "embedrt_inference_seconds",
            "Inference time of one batching round",
            buckets=SECONDS,
            registry=r,
        )
        self.batch_size = Histogram(
            "embedrt_batch_size", "Rows (texts) per batching round", buckets=ROWS, registry=r
        )
        self.batch_tokens = Histogram(
            "embedrt_batch_tokens", "Real tokens per batching round", buckets=TOKENS, registry=r
        )
        self.tokens = Counter(
            "embedrt_tokens",
            "Tokens run through the model (real) and their padded area",
            ["kind"],
            registry=r,
        )
        self.drops = Counter(
            "embedrt_dropped_requests",
            "Requests dropped before inference because the client disconnected",
            registry=r,
        )
        work = Counter(
            "embedrt_cpu_seconds",
            "CPU time of the threads that run inference and "
            "tokenization (ONNX Runtime's pool threads, used by runs on all threads, "
            "are not counted)",
            ["work"],
            registry=r,
        )
        self._work = {w: work.labels(w) for w in ("inference", "tokenization")}
        runs = Counter(
            "embedrt_runs",
            "Inference runs, on one stream's thread or alone on all threads",
            ["threads"],
            registry=r,
        )
        self._runs = {False: runs.labels("one"), True: runs.labels("all")}
        ProcessCollector(registry=r)
        self._by_request: dict[tuple[str, int], tuple] = {}
        self._real = self.tokens.labels("real")
        self._padded = self.tokens.labels("padded")
        self._sums = [0, 0]  # real, padded: prometheus_client has no public read of a counter
        Gauge(
            "embedrt_padding_efficiency",
            "Real tokens / padded tokens over all inference so far",
            registry=r,
        ).set_function(self._efficiency)

    def request(self, route: str, status: int, seconds: float) -> None:
        children = self._by_request.get((route, status))
        if children is None:  # routes and statuses are few: each pair's children made once
            children = self._by_request[route, status] = (
                self.requests.labels(route, str(status)),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def batch(self, rows: int, tokens: int, padded: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.batch_tokens.observe(tokens)
        self.inference.observe(seconds)
        self._real.inc(tokens)
        self._padded.inc(padded)
        self._sums[0] += tokens
        self._sums[1] += padded

    def queue_wait(self, seconds: float) -> None:
        self.queue.observe(seconds)

    def dropped(self) -> None:
        self.drops.inc()

    def cpu(self, work: str, seconds: float) -> None:
        self._work[work].inc(seconds)

    def run(self, all_threads: bool) -> None:
        self._runs[all_threads].inc()

    def counting(self, app: ASGIApp, routes: set[str]) -> ASGIApp:
        """ASGI middleware: every HTTP answer counted by route and status, with its latency."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            start, status = time.perf_counter(), [CLIENT_GONE]

            async def send_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                route = scope["path"] if scope["path"] in routes else "other"
                self.request(route, status[0], time.perf_counter() - start)

        return counted

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _efficiency(self) -> float:
        real, padded = self._sums
        return real / padded if padded else 1.0
