"""The HTTP/1.1 connection the server runs: uvicorn's httptools protocol, with the limits it lacks.

    uvicorn.Config(app, http=guarded_http(ConnectionLimits()))

- max_header_bytes: a request's line and headers; past it the client gets 431 and the
  connection is closed. uvicorn's httptools protocol buffers headers without a bound.
- read_timeout_s: a request must arrive whole, head and body, within this many seconds of its
  first byte, and a new connection must start one within it; else 408 and the connection is
  closed. uvicorn's keep-alive timer restarts on every byte, so a client that trickles (or
  sends half a header and waits) held its connection, and its file descriptor, forever.
- max_connections: open connections at most; one more first evicts the connection that has
  waited longest for its request to arrive (a stalled one), and is refused only when every
  connection is busy with a request. No single client can take every descriptor.

Events are uvicorn's (connection_made, data_received, on_headers_complete, ...); each override
calls uvicorn's own and adds only the limit.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ..errors import missing_extra
from .config import ConnectionLimits

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:
    raise missing_extra("uvicorn[standard] (httptools)", "serve") from None


def guarded_http(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class with these limits, for uvicorn.Config(http=...)."""
    cap = limits.connections()

    class GuardedHttp(HttpToolsProtocol):
        _reading: float | None  # loop time the current request started, None between requests
        _head: int | None  # bytes of the current request's head so far, None once complete
        _deadline: asyncio.TimerHandle | None
        _refused: bool  # answered by the guard; closing

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._deadline, self._refused = None, False
            self._begin()
            if len(self.connections) > cap:
                self._make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:  # answered and closing: what still arrives is read and dropped
                return
            if self._reading is None:  # the first byte of the next request on this connection
                self._begin()
            if self._head is not None:
                self._head += len(data)
            super().data_received(data)
            if self._head is not None and self._head > limits.max_header_bytes:
                self._refuse(431, f"request headers over {limits.max_header_bytes} bytes")

        def on_headers_complete(self) -> None:
            self._head = None
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            self._reading = None
            super().on_message_complete()

        def _begin(self) -> None:
            self._reading, self._head = self.loop.time(), 0
            self._disarm()
            self._deadline = self.loop.call_later(limits.read_timeout_s, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            self._refuse(408, f"request not received within {limits.read_timeout_s:g} s")

        def _make_room(self) -> None:
            waiting = [
                c
                for c in self.connections
                if isinstance(c, GuardedHttp)
                and c is not self
                and c._head is not None
                and c._reading is not None
                and not c._refused
                and not c.transport.is_closing()
            ]
            if waiting:  # the one that has waited longest for its request to arrive
                min(waiting, key=lambda c: c._reading or 0.0)._refuse(408, "evicted: too slow")
            else:
                self._refuse(503, "too many connections; retry shortly")

        def _refuse(self, status: int, why: str) -> None:
            """Answer status (unless a response has started) and close the connection: first
            our side, then, after LINGER_S of reading and dropping what the client still
            sends, the socket. Closing it at once with unread bytes in it would send a reset,
            and the client would never read the answer."""
            if self._refused or self.transport.is_closing():
                return
            self._refused = True
            self._disarm()
            if self.cycle is None or not self.cycle.response_started:
                body = json.dumps({"error": why}).encode()
                self.transport.write(
                    b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                    % (status, _REASONS[status], len(body), body)
                )
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

    return GuardedHttp


LINGER_S = 1.0  # seconds a refused connection reads and drops input before it closes
_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
