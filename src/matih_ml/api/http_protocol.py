"""uvicorn's HTTP protocol, with an answer's header and body sent in one write.

uvicorn writes a response's status line and headers when the app sends
``http.response.start``, and its body when it sends ``http.response.body``: two
``send()`` calls, two TCP segments, and for the client two wake-ups, per answer. For
a prediction that scores in microseconds that is a large share of the cost (py-spy
on ``matih-ml serve``: the socket writes were a quarter of the samples; aiohttp made
the same change, aio-libs/aiohttp#10991).

Here the transport a connection's requests write to gathers what is written within
one turn of the event loop and sends it with one ``write`` at the end of that turn.
A response's start and body are sent in the same turn, so they leave together; a
streamed response's chunks leave as soon as the turn that wrote them ends, so
nothing waits for more data.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _CoalescingTransport:
    """A transport's proxy whose writes within one loop turn leave in one write."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        """Queue ``data``; the first write of a turn schedules the flush."""
        chunk = data if isinstance(data, bytes) else bytes(data)
        if self._pending is None:
            self._pending = [chunk]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(chunk)

    def flush(self) -> None:
        """Send what this turn wrote (dropped if the connection is closing)."""
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        """Send what is queued, then close."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`_CoalescingTransport`
    (``uvicorn.run(..., http=CoalescingHttpToolsProtocol)``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wrap the connection's transport (uvloop's or asyncio's), then set up as uvicorn
        does."""
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
