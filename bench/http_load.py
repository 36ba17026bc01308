"""The load generator of bench/serve_load.py: a lean asyncio HTTP/1.1 client that sends each
text once as its own request from N keep-alive connections, so that it takes as little CPU as
possible from a server on the same machine; and a process's CPU time from /proc.

    run = arun(load("http://127.0.0.1:8080", texts, clients=64, limit_s=120))
    run["results"]   # (index, status, seconds, body) per request sent
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from pathlib import Path

import numpy as np


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The two request bodies measured: the official openai client's default (base64), and
# text-embeddings-inference's /embed, whose answer is JSON numbers.
ROUTES = {
    "openai": ("/v1/embeddings", lambda t: {"input": t, "encoding_format": "base64"}),
    "tei": ("/embed", lambda t: {"inputs": t}),
}


def answer_vector(route: str, body: bytes) -> np.ndarray:
    """The one vector of a single-text answer on that route."""
    if route == "tei":
        return np.array(json.loads(body)[0], dtype=np.float32)
    return np.frombuffer(base64.b64decode(json.loads(body)["data"][0]["embedding"]), "<f4")


async def load(
    url: str, texts: list[str], clients: int, limit_s: float, route: str = "openai"
) -> dict:
    """Send each text once as its own request from `clients` keep-alive connections."""
    host, port = url.removeprefix("http://").split(":")
    path, make_body = ROUTES[route]
    bodies = [json.dumps(make_body(t)).encode() for t in texts]
    head = (
        b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: "
        % path.encode()
    )
    results: list[tuple[int, int, float, bytes]] = []
    queue = iter(range(len(texts)))
    deadline = time.perf_counter() + limit_s

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for i in queue:
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            writer.write(b"%s%d\r\n\r\n%s" % (head, len(bodies[i]), bodies[i]))
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            results.append((i, status, time.perf_counter() - t0, body))
        writer.close()

    cpu0, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {
        "results": results,
        "wall_s": time.perf_counter() - start,
        "client_cpu_s": time.process_time() - cpu0,
    }


def arun(coro):
    """asyncio.run on uvloop where installed: the load generator's own CPU cost, halved."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
