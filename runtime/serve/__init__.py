"""embedrt.serve: the HTTP embedding service with dynamic batching (extra 'serve').

    from embedrt.serve import ServerConfig, serve
    serve("artifacts/all-MiniLM-L6-v2", ServerConfig(port=8080))     # until SIGTERM

    config.py     what the server is told (pure dataclasses; the CLI's defaults)
    protocol.py   OpenAI and text-embeddings-inference wire formats, no I/O
    queue.py      a caller's Request, the rounds taken from the queue and the runs cut from them
    scheduler.py  one worker thread that forms rounds and hands runs to the runner's streams
    app.py        the ASGI app: routes, auth, limits, the one place errors become statuses
    metrics.py    Prometheus metrics; server.py runs the app under uvicorn

Importing this package needs only the lean runtime; starting the server (or importing app,
protocol or metrics) needs the serve extra, and says so.
"""

from .config import BatchingConfig, Limits, ServerConfig
from .server import serve

__all__ = ["BatchingConfig", "Limits", "ServerConfig", "serve"]
