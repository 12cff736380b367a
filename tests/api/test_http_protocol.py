"""`matih-ml serve`'s HTTP protocol sends an answer's header and body in one write, and
still sends a streamed answer's chunks as they come (api/http_protocol.py)."""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from conftest import free_port
from matih_ml.api.http_protocol import CoalescingHttpToolsProtocol, _CoalescingTransport


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_writes_of_one_loop_turn_leave_together() -> None:
    async def scenario() -> list[list[bytes]]:
        real = _Recorder()
        transport = _CoalescingTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        seen = []
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(memoryview(b"body"))
        seen.append(list(real.writes))  # nothing sent within the turn
        await asyncio.sleep(0)
        seen.append(list(real.writes))
        transport.write(b"next")
        await asyncio.sleep(0)
        seen.append(list(real.writes))
        transport.write(b"last")
        transport.close()  # sends what is queued, then closes
        seen.append(list(real.writes))
        assert real.closed and transport.get_extra_info("peername") == "info:peername"
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == []
    assert seen[1] == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert seen[2] == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]
    assert seen[3][-1] == b"last"


async def _app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"second"})
        return
    body = b'{"predictions": [1]}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, log_level="warning", http=CoalescingHttpToolsProtocol
    )
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not served.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    served.should_exit = True
    thread.join(timeout=10)


def _request(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def _data_segments_in(sock: socket.socket) -> int:
    # struct tcp_info's tcpi_data_segs_in (Linux >= 4.6): segments received that carried
    # data (pure ACKs, which timing decides, are not counted).
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return struct.unpack_from("I", info, 152)[0]


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's struct tcp_info")
def test_an_answer_arrives_in_one_segment(server: int) -> None:
    # uvicorn's own protocol sends the same answer as two segments (header, then body).
    counts = []
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        for _ in range(10):
            before = _data_segments_in(sock)
            sock.sendall(b"GET /predict HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.endswith(b'{"predictions": [1]}'):
                got += sock.recv(65536)
            counts.append(_data_segments_in(sock) - before)
    assert counts == [1] * 10, counts


def test_a_streamed_answer_is_sent_as_it_comes(server: int) -> None:
    with _request(server, "/stream") as sock:
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 OK") and b"first" in first
        assert b"second" not in first  # sent 0.3 s later, not held back with it
        rest = b""
        while b"0\r\n\r\n" not in rest:
            rest += sock.recv(65536)
        assert b"second" in rest
