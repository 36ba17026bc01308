"""`embedrt serve`: load an artifact and run its HTTP service under uvicorn until a signal.

    embedrt serve -m artifacts/all-MiniLM-L6-v2          # http://127.0.0.1:8080

uvicorn with httptools and uvloop (the `serve` extra's uvicorn[standard]) in one process: one
ONNX Runtime session and one inference worker, which the event loop feeds (app.py).
"""

from __future__ import annotations

import logging
import math
import signal
import socket
from pathlib import Path
from typing import Any

from ..errors import EXIT_SETUP, ConfigError, missing_extra
from ..session import SessionOptions
from .config import ServerConfig

log = logging.getLogger("embedrt.server")
DRAIN_MARGIN_S = 5  # seconds uvicorn's hard cut-off waits after the service's own drain limit


def serve(
    artifact: str | Path,
    config: ServerConfig,
    device: str = "auto",
    precision: str = "auto",
    threads: int | None = None,
    spinning: str = SessionOptions.spinning,
    streams: int | None = None,
    max_seq_length: int | None = None,
) -> int:
    """Load the artifact and serve it until SIGTERM or SIGINT; returns the exit status.

    On a signal, uvicorn stops accepting connections, finishes every request it has accepted
    (the scheduler keeps running until then), and only then runs the app's shutdown.
    """
    try:
        import uvicorn
    except ImportError:
        raise missing_extra("uvicorn", "serve") from None
    from ..encoder import Encoder
    from .app import EmbeddingService  # names the missing extra (starlette, orjson, ...) if any
    from .http import guarded_http

    sock = _bind(config.host, config.port)  # before the model loads: a taken port fails at once

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # spinning "run" by default: ONNX Runtime's threads spin only while a run is in flight;
    # idle ones spinning between runs would take the cores the event loop needs
    # (bench/results/spinning.md, serve_load.md).
    encoder = Encoder.load(
        artifact,
        device,
        precision,
        threads=threads,
        spinning=spinning,
        streams=streams,
        batch_tokens=config.batching.max_batch_tokens,
        max_seq_length=max_seq_length,
    )
    encoder.runner.start()  # now, so that no request pays for the streams' session
    service = EmbeddingService(encoder, config)
    host, port = sock.getsockname()[:2]
    if config.api_key is None and not _loopback(config.host):
        log.warning(
            "serving on %s without --api-key-file: anyone who can reach it can use it", host
        )
    log.info(
        "model %s (%s, %s) on %s",
        service.model,
        encoder.info.device,
        encoder.info.precision,
        ", ".join(encoder.info.active_providers),
    )
    shown = f"[{host}]" if ":" in host else host
    print(f"embedrt serve: listening on http://{shown}:{port}", flush=True)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:  # uvicorn's signal handler
            super().handle_exit(sig, frame)
            service.drain(config.graceful_timeout_s)

    server = Server(
        uvicorn.Config(
            service.app,
            lifespan="on",
            access_log=config.access_log,
            log_level="info",
            http=guarded_http(config.connections),
            ws="none",  # no WebSocket routes: an upgrade request is plain HTTP here
            # uvicorn's own cut-off (it cancels what is left, answering plain-text 500s) comes
            # after the service has answered every request still waiting (app.drain).
            timeout_graceful_shutdown=math.ceil(config.graceful_timeout_s) + DRAIN_MARGIN_S,
        )
    )
    # uvicorn re-raises the signal that stopped it once it is done; with the default SIGTERM
    # action that would kill the process after a clean drain and report failure. Ours asks for
    # the same graceful exit, which also covers a signal arriving before uvicorn's own handlers.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
    server.run(sockets=[sock])
    return 0 if server.started else EXIT_SETUP


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
