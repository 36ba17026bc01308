"""`embedrt serve`: the CLI's options turned into the server's config, and the server run.

cli.py parses the options; this module is what the command does (commands.py hands over).
"""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from .config import BatchingConfig, ConnectionLimits, Limits, ServerConfig
from .server import serve as run_server  # names a missing 'serve' extra when it starts


def serve_command(args: argparse.Namespace) -> int:
    """`embedrt serve`: the server's config from the options, then serve until a signal."""
    key = read_api_key(args.api_key_file) if args.api_key_file else None
    config = ServerConfig(
        host=args.host,
        port=args.port,
        api_key=key,
        model_name=args.model_name,
        auto_truncate=args.auto_truncate,
        prompt_name=args.prompt_name,
        access_log=args.access_log,
        graceful_timeout_s=args.graceful_timeout,
        connections=ConnectionLimits(
            max_header_bytes=args.max_header_bytes,
            read_timeout_s=args.read_timeout,
            max_connections=args.max_connections,
        ),
        limits=Limits(
            max_inputs=args.max_inputs,
            max_body_bytes=args.max_body_bytes,
            max_request_tokens=args.max_request_tokens,
        ),
        batching=BatchingConfig(
            max_batch_tokens=args.max_batch_tokens,
            max_batch_requests=args.max_batch_requests,
            max_wait_ms=args.max_wait_ms,
            max_queue=args.max_queue,
            batch_size=args.batch_size,
            run_cost=args.run_cost,
            batching=not args.no_batching,
            fair=not args.fifo,
        ),
    )
    return run_server(
        args.model,
        config,
        args.device,
        args.precision,
        threads=args.threads,
        spinning=args.spinning,
        streams=args.streams,
        max_seq_length=args.max_seq_length,
    )


def read_api_key(path: str) -> str:
    """The one key a file holds (UTF-8, surrounding whitespace ignored), or a ConfigError."""
    try:
        key = open(path, encoding="utf-8").read().strip()
    except OSError as e:
        raise ConfigError(f"--api-key-file {path!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--api-key-file {path!r} is not UTF-8 text") from None
    if not key or any(c.isspace() for c in key):
        raise ConfigError(f"--api-key-file {path!r} must hold one key, no spaces")
    return key
