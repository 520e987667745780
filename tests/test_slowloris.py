"""Slowloris: chat_core.http_guard.GuardedHttpProtocol in real uvicorn servers.

Most tests run the chat app in a uvicorn subprocess on a free loopback port,
through a launcher script written into tmp_path that passes
``GuardedHttpProtocol.configured(...)`` as ``uvicorn.Config(http=...)``. The
attacker connects from 127.0.0.1, well-behaved clients from 127.0.0.2 (Linux
routes all of 127/8 to loopback), since the cap is per address.
The last test runs the protocol in-process to read its half-open counter directly.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import select
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Optional

import pytest
import uvicorn
from uvicorn.server import ServerState
from websockets.asyncio.client import connect

from chat_core.http_guard import GuardedHttpProtocol
from servers import ServerProcess

pytestmark = pytest.mark.timeout(15)

ATTACKER = "127.0.0.1"
OTHER = "127.0.0.2"
PARTIAL = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # the blank line that ends the headers never comes
GET = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"  # a complete request

# Run as `python -c LAUNCHER` in the repository root (ServerProcess's cwd), where chat_core is importable.
LAUNCHER = textwrap.dedent("""\
    import argparse
    import uvicorn
    from chat_core.http_guard import GuardedHttpProtocol
    from chat_core.settings import Settings
    from chat_core.transport import ChatWebSocketProtocol
    from chat_core.web import create_app

    p = argparse.ArgumentParser()
    p.add_argument("--host"); p.add_argument("--port", type=int); p.add_argument("--db")
    p.add_argument("--header-timeout", type=float); p.add_argument("--max-half-open", type=int)
    a = p.parse_args()
    app = create_app(Settings(db=a.db))
    http = GuardedHttpProtocol.configured(header_timeout=a.header_timeout, max_half_open_per_ip=a.max_half_open)
    uvicorn.Server(uvicorn.Config(app, host=a.host, port=a.port, http=http, ws=ChatWebSocketProtocol,
                                  log_level="warning", timeout_graceful_shutdown=1)).run()
""")

Start = Callable[..., ServerProcess]


@pytest.fixture
def start(tmp_path) -> Iterator[Start]:
    """Start a guarded chat server; every one started is stopped (by its pid) afterwards."""
    started: list[ServerProcess] = []

    def run(header_timeout: float = 0.0, max_half_open: int = 0) -> ServerProcess:
        n = len(started)
        srv = ServerProcess(
            [
                "--db",
                str(tmp_path / f"chat{n}.db"),
                "--header-timeout",
                str(header_timeout),
                "--max-half-open",
                str(max_half_open),
            ],
            command=[sys.executable, "-c", LAUNCHER],
            log_path=tmp_path / f"server{n}.log",
        )
        started.append(srv)
        return srv.start(timeout=10)

    yield run
    for srv in started:
        srv.stop(timeout=5)


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Client sockets to close at the end, whatever happens."""
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def open_socket(
    port: int, source: str = ATTACKER, send: bytes = PARTIAL, keep: Optional[list[socket.socket]] = None
) -> socket.socket:
    s = socket.socket()
    if keep is not None:
        keep.append(s)
    s.settimeout(2)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    if send:
        s.sendall(send)
    return s


def read_closed(s: socket.socket) -> bytes:
    """What is left to read from a socket the server closed (b'' if it sent nothing, or a reset)."""
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    except (TimeoutError, ConnectionResetError):
        return data


def closed_ones(socks: list[socket.socket], within: float) -> dict[int, float]:
    """Indices of the sockets the server closes within ``within`` seconds -> when (since now)."""
    t0 = time.monotonic()
    closed: dict[int, float] = {}
    while True:
        waiting = [s for i, s in enumerate(socks) if i not in closed]
        left = t0 + within - time.monotonic()
        if not waiting or left <= 0:
            return closed
        readable, _, _ = select.select(waiting, [], [], left)
        for s in readable:
            read_closed(s)
            closed[socks.index(s)] = time.monotonic() - t0


def dribble(
    s: socket.socket, interval: float, limit: float, line: Callable[[int], bytes]
) -> tuple[Optional[float], bytes]:
    """Send ``line(i)`` every ``interval`` s until the server closes (-> seconds it
    took, what it sent) or ``limit`` s pass (-> None, b'')."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < limit:
        readable, _, _ = select.select([s], [], [], interval)
        if readable:
            return time.monotonic() - t0, read_closed(s)
        try:
            s.sendall(line(i))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - t0, b""
        i += 1
    return None, b""


def read_response(s: socket.socket) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a content-length from a kept-alive socket: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.strip().lower() == "content-length")
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    assert len(body) == length, "more bytes than the response"
    return int(lines[0].split()[1]), body


def healthz(port: int, source: str) -> tuple[int, float]:
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1, source_address=(source, 0))
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - t0
    finally:
        conn.close()


async def ws_welcome(port: int, source: str) -> tuple[dict, float]:
    t0 = time.monotonic()
    async with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=2, local_addr=(source, 0)) as ws:
        await ws.send(json.dumps({"type": "join", "payload": {"user": "x"}}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 2))
            if frame["type"] == "welcome":
                return frame, time.monotonic() - t0


def header_line(i: int) -> bytes:
    return b"X-Slow-%d: y\r\n" % i


# (a)


def test_header_deadline_closes_a_client_that_dribbles_headers(start, sockets):
    srv = start(header_timeout=1)
    s = open_socket(srv.port, keep=sockets)  # sends the request line and Host at t=0
    took, sent = dribble(s, 0.3, 5, header_line)
    assert took is not None, "still open after 5 s of a header line every 0.3 s"
    assert 0.9 <= took <= 2.5, took
    assert sent == b"" or sent.startswith(b"HTTP/1.1 408 "), sent


# (b) and (c)


def test_half_open_cap_per_address_keeps_the_server_available(start, sockets):
    srv = start(max_half_open=8)  # no deadline: only the cap is at work
    socks = [open_socket(srv.port, keep=sockets) for _ in range(30)]
    closed = closed_ones(socks, within=1.5)
    assert len(closed) == 22, f"{30 - len(closed)} of 30 half-open connections stayed open"
    assert max(closed.values()) < 1.0, closed  # refused at once
    hanging = [s for i, s in enumerate(socks) if i not in closed]

    # While 8 connections from 127.0.0.1 hang, other clients are served promptly.
    status, took = healthz(srv.port, OTHER)
    assert status == 200 and took < 1.0, (status, took)
    welcome, took = asyncio.run(ws_welcome(srv.port, OTHER))
    assert welcome["type"] == "welcome" and took < 2.0, took
    assert not closed_ones(hanging, within=0.2), "the 8 admitted ones were closed"

    # (c) The client gives up on them: its address may open as many again, and no more.
    for s in hanging:
        s.close()
    deadline = time.monotonic() + 3
    while True:  # the server notices the closes within a loop iteration or two
        again = [open_socket(srv.port, keep=sockets) for _ in range(8)]
        if not closed_ones(again, within=0.3) or time.monotonic() > deadline:
            break
        for s in again:
            s.close()
    assert not closed_ones(again, within=0.3), "the counter was not released when the client closed"
    ninth = open_socket(srv.port, keep=sockets)
    assert closed_ones([ninth], within=1.0), "the cap no longer holds: counted too low"
    for s in again:
        s.close()
    time.sleep(0.3)
    assert healthz(srv.port, ATTACKER)[0] == 200


def test_counter_released_on_deadline_and_on_complete_headers(start, sockets):
    srv = start(header_timeout=1, max_half_open=8)
    # Eight connections that completed a request and stay kept alive are not half-open.
    kept = [open_socket(srv.port, send=GET, keep=sockets) for _ in range(8)]
    assert all(read_response(s)[0] == 200 for s in kept)
    first = [open_socket(srv.port, keep=sockets) for _ in range(8)]
    assert not closed_ones(first, within=0.3)
    assert closed_ones([open_socket(srv.port, keep=sockets)], within=1.0), "a 9th half-open one was let in"
    # The deadline closes the eight half-open ones (and releases them) ...
    assert len(closed_ones(first, within=2.5)) == 8
    # ... so eight new ones are let in again.
    second = [open_socket(srv.port, keep=sockets) for _ in range(8)]
    assert not closed_ones(second, within=0.3), "the counter was not released on the deadline"


# (d)


def test_keep_alive_client_gets_a_fresh_deadline_per_request(start, sockets):
    srv = start(header_timeout=1)
    s = open_socket(srv.port, send=GET, keep=sockets)
    t0 = time.monotonic()
    assert read_response(s)[0] == 200
    time.sleep(0.5)
    # The second request's headers end 1.2 s after the connection was made, 0.7 s
    # after the request began: within its own deadline.
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(0.7)
    s.sendall(b"Accept: */*\r\n\r\n")
    assert read_response(s)[0] == 200
    assert time.monotonic() - t0 > 1.1
    # The deadline was restarted, not dropped: a third request that dribbles is cut.
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    took, sent = dribble(s, 0.3, 5, header_line)
    assert took is not None and 0.9 <= took <= 2.5, took
    assert sent == b"" or sent.startswith(b"HTTP/1.1 408 "), sent


def test_bare_crlfs_on_an_idle_connection_do_not_hold_it_open(start, sockets):
    """In plain uvicorn 0.54 any byte cancels the keep-alive timer, and CRLFs start
    no request, so this connection would stay open for as long as they come."""
    srv = start(header_timeout=1)
    s = open_socket(srv.port, send=GET, keep=sockets)
    assert read_response(s)[0] == 200
    took, sent = dribble(s, 0.3, 5, lambda i: b"\r\n")
    assert took is not None and 0.9 <= took <= 2.5, took
    assert sent == b"", sent  # no request had begun: closed without a response


# The counter itself, in-process: exact, never negative, addresses dropped at zero.


async def _plain_app(scope: dict, receive: Callable, send: Callable) -> None:
    if scope["type"] == "http":
        peer = scope.get("extensions", {}).get("chat_core.peer", "")
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(peer)).encode())]}
        )
        await send({"type": "http.response.body", "body": peer.encode()})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


def test_half_open_counter_is_exact_in_process():
    async def main() -> None:
        cls = GuardedHttpProtocol.configured(header_timeout=0.5, max_half_open_per_ip=3)
        config = uvicorn.Config(_plain_app, log_config=None, ws="websockets-sansio", lifespan="off")
        config.load()
        state = ServerState()
        server = await asyncio.get_running_loop().create_server(
            lambda: cls(config=config, server_state=state, app_state={}), ATTACKER, 0
        )
        port = server.sockets[0].getsockname()[1]
        counts = cls.half_open

        async def settle() -> None:
            await asyncio.sleep(0.05)
            assert all(n > 0 for n in counts().values()), counts()

        async def half_open() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection(ATTACKER, port)
            writer.write(PARTIAL)
            return reader, writer

        conns = [await half_open() for _ in range(3)]
        await settle()
        assert counts() == {ATTACKER: 3}
        refused = await half_open()
        assert await asyncio.wait_for(refused[0].read(), 1) == b""
        assert counts() == {ATTACKER: 3} and len(state.connections) == 3  # uvicorn never saw the refused one

        # Completing the headers releases one and the app sees the real peer.
        conns[0][1].write(b"\r\n")
        head = await asyncio.wait_for(conns[0][0].readuntil(b"\r\n\r\n"), 1)
        assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(conns[0][0].readexactly(len(ATTACKER)), 1) == ATTACKER.encode()
        assert counts() == {ATTACKER: 2}
        # The client closing one releases it.
        conns[1][1].close()
        await settle()
        assert counts() == {ATTACKER: 1}
        # The deadline releases the last one; the address leaves the dict.
        assert (await asyncio.wait_for(conns[2][0].read(), 1.5)).startswith(b"HTTP/1.1 408 ")
        await settle()
        assert counts() == {}

        # A new request on the kept-alive connection is half-open again until its headers end.
        reader, writer = conns[0]
        writer.write(PARTIAL)
        await settle()
        assert counts() == {ATTACKER: 1}
        writer.write(b"\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 1)).startswith(b"HTTP/1.1 200")
        await asyncio.wait_for(reader.readexactly(len(ATTACKER)), 1)
        assert counts() == {}

        # Upgrading that same kept-alive connection to a WebSocket releases everything,
        # and no deadline is armed on it afterwards.
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 1)).startswith(b"HTTP/1.1 101")
        assert counts() == {}
        with pytest.raises(asyncio.TimeoutError):  # still open well past header_timeout
            await asyncio.wait_for(reader.read(1), 1.0)
        writer.close()
        await settle()
        assert counts() == {}

        for _, w in [*conns, refused]:
            w.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
