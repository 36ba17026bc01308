"""What `embedrt serve` is told: batching, request limits, and the server's own settings.

Pure frozen dataclasses (no HTTP library), so `embedrt.serve` imports without the serve extra.
Each field says its unit and why its default is what it is; the CLI takes its defaults from here.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field, replace

from ..batching import BatchPlan
from ..config import check_int, check_number
from ..errors import ConfigError
from ..tokenizer import utf8_encodable

# Seconds the shutdown waits for the inference worker once uvicorn's grace period is over: by then
# only the round in flight is left (requests cut off were cancelled and are skipped), and a full
# round (16384 tokens) takes a second or two on two CPU cores; 10 s leaves room for cores busy
# with other work. Whatever is still queued after it is answered 503.
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class BatchingConfig:
    """How the scheduler's worker forms rounds and runs.

    max_batch_tokens: real tokens (sum of row lengths) taken from the queue per round, and the
        padded-token cap of each inference run inside it, within the encoder's own (on the CPU
        sized by the model: batching.cpu_run_tokens). 16384 is text-embeddings-inference's
        default.
    max_wait_ms: how long the oldest queued request may wait for others to join its round while
        a stream is idle. Under load the streams are busy and rounds fill while they run, so this
        only matters at low load, where it trades a little latency for larger batches.
    max_queue: requests submitted and not yet completely taken into rounds; one more is answered
        OverloadedError (HTTP 429). Bounds memory and the latency a caller can be made to wait
        behind others.
    batch_size: most rows per inference run within a round. The round's rows are sorted by
        length and cut into runs by plan_batches(), trading padding against the cost of a run.
    run_cost: the fixed cost of one inference run, in tokens of work; None = the device's
        (batching.CPU_RUN_COST, batching.GPU_RUN_COST).
    batching: False runs every request on its own with no wait: the one-request-one-inference
        baseline the benchmark compares against.
    max_batch_requests: most requests per round, None = no limit (as in
        text-embeddings-inference, whose option this is). A smaller round answers its last
        caller sooner; a larger one sorts more texts together.
    fair: a request larger than a round goes to the back of the line after each round it
        takes part in, so a small request waits for about one round of a big one, never for
        all of it. False: strict FIFO (text-embeddings-inference's order), the benchmark's
        baseline (bench/results/serve_mixed.md).
    """

    max_batch_tokens: int = 16384
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    batch_size: int = 32
    run_cost: int | None = None
    batching: bool = True
    max_batch_requests: int | None = None
    fair: bool = True

    def plan(self, device: BatchPlan) -> BatchPlan:
        """The plan of each round's runs: this config's limits within the device's own (its
        tokens per run, on the CPU sized by the model: batching.cpu_run_tokens), its pad
        multiple, and its run cost unless run_cost is set."""
        cost = device.run_cost if self.run_cost is None else self.run_cost
        tokens = min(device.max_tokens, self.max_batch_tokens)
        return replace(device, max_tokens=tokens, max_rows=self.batch_size, run_cost=cost)

    def __post_init__(self) -> None:
        for name in ("max_batch_tokens", "max_queue", "batch_size"):
            check_int(name, getattr(self, name))
        check_int("max_batch_requests", self.max_batch_requests, none=True)
        check_int("run_cost", self.run_cost, least=0, none=True)
        check_number("max_wait_ms", self.max_wait_ms, 0, 60_000)


@dataclass(frozen=True)
class Limits:
    """What one request may carry.

    max_inputs: texts per request. 2048 is OpenAI's limit for /v1/embeddings, so clients written
        for it never see a 413 here that they would not see there.
    max_body_bytes: request body size. 4 MiB holds 2048 sentences with room to spare and keeps a
        hostile body from costing more than a few milliseconds of JSON parsing.
    max_request_tokens: tokens of one request after truncation, special tokens included; more
        is answered 413. None = no limit beyond max_inputs x max_seq_length. A server shared by
        many clients can bound what one request asks of it.
    """

    max_inputs: int = 2048
    max_body_bytes: int = 4 << 20
    max_request_tokens: int | None = None

    def __post_init__(self) -> None:
        check_int("max_inputs", self.max_inputs)
        check_int("max_body_bytes", self.max_body_bytes)
        check_int("max_request_tokens", self.max_request_tokens, none=True)


# File descriptors kept free for everything but client connections: the model, logs, the
# listening socket, ONNX Runtime and Python's own.
RESERVED_FDS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may cost the server.

    max_header_bytes: request line and headers, in bytes. 64 KiB is above what any client
        sends (nginx allows 32 KiB by default) and small enough that many stalled clients
        cost little memory.
    read_timeout_s: seconds from a request's first byte (or from the connection's start) to
        its last. 60 leaves room for a maximum-size body (4 MiB) over a slow link.
    max_connections: open connections; None = 1024, lowered to what the process's file
        descriptor limit leaves (RESERVED_FDS kept free).
    """

    max_header_bytes: int = 64 << 10
    read_timeout_s: float = 60.0
    max_connections: int | None = None

    def __post_init__(self) -> None:
        check_int("max_header_bytes", self.max_header_bytes, least=1024, most=1 << 24)
        check_number("read_timeout_s", self.read_timeout_s, 0.1, 24 * 3600)
        check_int("max_connections", self.max_connections, most=1 << 20, none=True)

    def connections(self) -> int:
        """The connection cap in force: the setting, or the default, within the fd limit."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        room = soft - RESERVED_FDS if soft != resource.RLIM_INFINITY else 1 << 20
        return max(1, min(self.max_connections or 1024, room))


@dataclass(frozen=True)
class ServerConfig:
    """Everything `embedrt serve` is told. Strings were parsed at the edge (the CLI).

    host / port: where to listen; loopback by default, so nothing is exposed by accident.
    api_key: the bearer token every route but /health requires; None = no auth (fine on
        127.0.0.1, the default bind).
    model_name: the id /v1/embeddings answers with (default: the artifact's source model name).
    auto_truncate: what a request that does not say ("truncate" absent or null) gets: inputs
        past max_seq_length cut (True, text-embeddings-inference's default and what
        sentence-transformers does), or refused with 422.
    prompt_name: the prompt applied where a request names none (text-embeddings-inference's
        --default-prompt-name); None = the model's own default prompt, if it has one.
    io_threads: threads that decode large request bodies and render large responses next to
        the event loop (small ones are done on the loop: a hand-off costs more than they do).
    graceful_timeout_s: seconds a SIGTERM waits for accepted requests; those still waiting
        then are answered 503 with Retry-After in their route's JSON (a load balancer retries
        them elsewhere). 30 covers a full queue of long texts on two CPU cores. The inference
        worker then gets at most CLOSE_TIMEOUT_S more to finish its round.
    connections: what one connection may cost (header bytes, read timeout, connection cap).
    access_log: uvicorn's line per request; off by default, /metrics counts every request.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    model_name: str | None = None
    auto_truncate: bool = True
    prompt_name: str | None = None
    limits: Limits = field(default_factory=Limits)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    io_threads: int = 2
    graceful_timeout_s: float = 30.0
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    access_log: bool = False

    def __post_init__(self) -> None:
        check_int("port", self.port, least=0, most=65535)
        check_int("io_threads", self.io_threads, most=64)
        check_number("graceful_timeout_s", self.graceful_timeout_s, 0, 24 * 3600)
        # A name from undecodable command-line bytes would make every answer fail to render.
        if self.model_name is not None and not utf8_encodable(self.model_name):
            raise ConfigError(f"model_name {self.model_name!r} is not valid UTF-8")
