"""The HTTP/1.1 connection the server runs: uvicorn's httptools protocol, with the limits it lacks.

    uvicorn.Config(app, http=guarded_http(ConnectionLimits()))

- max_header_bytes: a request's line and headers; past it the client gets 431 and the
  connection is closed. uvicorn's httptools protocol buffers headers without a bound.
- read_timeout_s: a request must arrive whole, head and body, within this many seconds of its
  first byte, and a new connection must start one within it; else 408 and the connection is
  closed. uvicorn's keep-alive timer restarts on every byte, so a client that trickles (or
  sends half a header and waits) held its connection, and its file descriptor, forever.
- max_connections: open connections at most; one more first evicts the connection that has
  waited longest for a request that is not coming (idle, then stalled), and is refused only
  when every connection is busy with a request. No single client can take every descriptor.
- a client that stops reading its answer is cut off after the read timeout too.

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
        """A connection is in one phase at a time: IDLE (ready for a request, none of it here
        yet), HEAD and BODY (a request arriving), BUSY (a request received whole, its answer
        not yet sent). The read deadline runs from IDLE to the end of BODY; a stalled write
        (a client that stops reading) has a deadline of its own."""

        _phase: str
        _since: float  # loop time the phase began
        _head: int  # bytes received in this request's HEAD so far
        _pipelined: int  # requests received whole while another was BUSY
        _deadline: asyncio.TimerHandle | None
        _stuck: asyncio.TimerHandle | None  # armed while uvicorn waits for the client to read
        _refused: bool  # answered by the guard; closing

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._deadline = self._stuck = None
            self._refused, self._pipelined = False, 0
            self._ready()
            if len(self.connections) > cap:
                self._make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._stuck is not None:
                self._stuck.cancel()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:  # answered and closing: what still arrives is read and dropped
                return
            if self._phase == IDLE:
                self._enter(HEAD)
            if self._phase == HEAD:
                self._head += len(data)
            super().data_received(data)
            if self._phase == HEAD and self._head > limits.max_header_bytes:
                self._refuse(431, f"request headers over {limits.max_header_bytes} bytes")

        def on_headers_complete(self) -> None:
            if self._phase == HEAD:
                self._enter(BODY)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            if self._phase in (HEAD, BODY):
                self._disarm()
                self._enter(BUSY)
            else:  # a pipelined request, received whole while the one before is answered
                self._pipelined += 1
            super().on_message_complete()

        def on_response_complete(self) -> None:
            arriving = self._phase in (HEAD, BODY)  # answered before it arrived whole (401, 413)
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if arriving:  # the rest of its body is of no use: do not wait for it
                self.transport.close()
            elif self._pipelined:  # uvicorn starts the next one, already received
                self._pipelined -= 1
            else:
                self._ready()

        def pause_writing(self) -> None:  # the client is not reading what it asked for
            super().pause_writing()
            if self._stuck is None:
                self._stuck = self.loop.call_later(limits.read_timeout_s, self.transport.abort)

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._stuck is not None:
                self._stuck.cancel()
                self._stuck = None

        def _ready(self) -> None:
            """Ready for the next request: it must arrive whole within the read timeout."""
            self._enter(IDLE)
            self._disarm()
            self._deadline = self.loop.call_later(limits.read_timeout_s, self._too_slow)

        def _enter(self, phase: str) -> None:
            self._phase, self._since = phase, self.loop.time()
            if phase == HEAD:
                self._head = 0

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            self._refuse(408, f"request not received within {limits.read_timeout_s:g} s")

        def _make_room(self) -> None:
            """Over the cap: close the connection that has waited longest for a request that
            is not coming (idle first, then one stalled in its head, then in its body); never
            one whose request is being answered."""
            waiting = [
                c
                for c in self.connections
                if isinstance(c, GuardedHttp)
                and c is not self
                and c._phase != BUSY
                and not c._refused
                and not c.transport.is_closing()
            ]
            if waiting:
                order = {IDLE: 0, HEAD: 1, BODY: 2}
                min(waiting, key=lambda c: (order[c._phase], c._since))._refuse(
                    408, "evicted: too slow"
                )
            else:  # every connection is busy with a request: this one waits for none
                self._refuse(503, "too many connections; retry shortly", linger=False)

        def _refuse(self, status: int, why: str, linger: bool = True) -> None:
            """Answer status, unless an answer is already under way, and close the connection:
            first our side, then, after LINGER_S of reading and dropping what the client still
            sends, the socket (closing it at once with unread bytes in it sends a reset, and
            the client never reads the answer). A request whose answer cannot be sent any more
            sees its client gone."""
            if self._refused or self.transport.is_closing():
                return
            self._refused = True
            self._disarm()
            cycle = self.cycle if self._phase == BODY else None  # else: none, or the last one's
            if cycle is None or not cycle.response_started:
                body = json.dumps({"error": why}).encode()
                self.transport.write(
                    b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                    % (status, _REASONS[status], len(body), body)
                )
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
            if not linger:
                self.transport.abort()
                return
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.transport.resume_reading()
            self.loop.call_later(LINGER_S, self.transport.abort)

    return GuardedHttp


IDLE, HEAD, BODY, BUSY = "idle", "head", "body", "busy"
LINGER_S = 1.0  # seconds a refused connection reads and drops input before it closes
_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
