"""Promises of docs/protocol.md and docs/security.md that no other test checked.

In-process (Starlette's TestClient) where the app alone shows the behaviour; uvicorn
in a thread where the WebSocket layer matters (frame sizes, the kernel's send
buffer); a ``python -m chat_core`` subprocess where only the whole server shows it
(a shutdown, a peer that never takes its close frame)."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import termios
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import ConnectionClosed

from chat_core import limits
from chat_core.serve import uvicorn_config
from chat_core.settings import Settings, limits_off
from chat_core.transport import ChatWebSocketProtocol
from chat_core.web import create_app
from servers import ServerProcess, free_port
from wsclient import Client

pytestmark = pytest.mark.timeout(30)  # TestClient's receive has no timeout of its own

LINUX = sys.platform.startswith("linux")
T = TypeVar("T")


def settings(**overrides: Any) -> Settings:
    """Abuse limits off (as in every test about something else), history in memory."""
    return Settings.from_env({**limits_off(), **overrides.pop("env", {})}, **{"db": ":memory:", **overrides})


def client(**overrides: Any) -> TestClient:
    return TestClient(create_app(settings(**overrides)), base_url="http://127.0.0.1")


def send(ws: Any, frame: dict) -> None:
    ws.send_text(json.dumps(frame))


def join(ws: Any, user: str, **extra: Any) -> tuple[list[dict], dict]:
    """Send a join; (the frames before the answer, the `welcome` or `error`)."""
    send(ws, {"type": "join", "payload": {"user": user, **extra}})
    before = []
    while True:
        frame = json.loads(ws.receive_text())
        if frame["type"] in ("welcome", "error"):
            return before, frame
        before.append(frame)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def run(coro: Any, timeout: float = 20) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --- a WebSocket client on a bare socket, which can stop reading at will --------------


def masked(text: str) -> bytes:
    """One client text frame (masked, as RFC 6455 requires of clients)."""
    data, mask = text.encode(), os.urandom(4)
    n = len(data)
    if n < 126:
        head = bytes([0x81, 0x80 | n])
    elif n < 65536:
        head = bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def split_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Whole server frames (opcode, payload) at the start of ``buf``, and the rest."""
    frames = []
    while len(buf) >= 2:
        n, start = buf[1] & 0x7F, 2
        if n >= 126:
            start = 4 if n == 126 else 10
            if len(buf) < start:
                break
            n = int.from_bytes(buf[2:start], "big")
        if len(buf) < start + n:
            break
        frames.append((buf[0] & 0x0F, buf[start : start + n]))
        buf = buf[start + n :]
    return frames, buf


class RawClient:
    """The handshake and frames by hand over a TCP socket with a small receive buffer."""

    def __init__(self, port: int, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            assert self._read(), "closed during the handshake"
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _read(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def send(self, frame: dict) -> None:
        self.sock.sendall(masked(json.dumps(frame)))

    def join(self, user: str) -> None:
        self.send({"type": "join", "payload": {"user": user}})
        while True:
            frames, self.buf = split_frames(self.buf)
            if any(op == 1 and json.loads(p)["type"] == "welcome" for op, p in frames):
                return
            assert self._read(), "closed before its welcome"

    def read_to_the_end(self, timeout: float = 5.0) -> list[tuple[int, bytes]]:
        """Read everything until the server ends the connection (bounded by ``timeout``)."""
        self.sock.settimeout(timeout)
        try:
            while self._read():
                pass
        except (TimeoutError, ConnectionError):
            pass
        return split_frames(self.buf)[0]

    def close(self) -> None:
        self.sock.close()


# --- uvicorn in a thread, with the chat's own HTTP and WebSocket layers ----------------


@contextmanager
def uvicorn_thread(s: Settings) -> Iterator[tuple[Any, uvicorn.Server, int]]:
    """The app served by uvicorn as ``serve()`` configures it, in this process: (app, server, port)."""
    app = create_app(s)
    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, s, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield app, server, port
    finally:
        server.should_exit = True
        thread.join(10)


def on_loop(app: Any, fn: Callable[[], T]) -> T:
    """``fn()`` run on the server's event loop (the chat's state belongs to that thread)."""

    async def call() -> T:
        return fn()

    return asyncio.run_coroutine_threadsafe(call(), app.state.chat.loop).result(5)


# --- 1. shutting_down ---------------------------------------------------------------------


def test_a_message_sent_while_the_server_stops_is_refused_with_shutting_down_and_never_sent(tmp_path: Path) -> None:
    """protocol.md, errors: "`shutting_down`: the server is stopping; the message was not sent
    (send it again after reconnecting)". A real SIGTERM; --commit-delay keeps the stop busy
    writing the pending batch for over a second, and messages sent meanwhile are refused."""
    db = str(tmp_path / "chat.db")
    srv = ServerProcess(["--db", db, "--commit-delay", "1.5"], log_path=tmp_path / "s.log")
    srv.start()
    try:

        async def go() -> tuple[list[str], list[str], int]:
            a, b = await Client.open(srv.ws_url), await Client.open(srv.ws_url)
            await a.join("alice")
            await b.join("bob")
            await a.say("before")
            await asyncio.sleep(0.2)  # read by the server; its batch waits for the commit delay
            srv.proc.send_signal(signal.SIGTERM)
            echoed, refused, sent = [], [], 0

            async def keep_sending() -> None:
                nonlocal sent
                try:
                    while True:
                        await a.say(f"during-{sent}")
                        sent += 1
                        await asyncio.sleep(0.05)
                except ConnectionClosed:
                    pass

            sender = asyncio.ensure_future(keep_sending())
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    frame = await a.recv(timeout=10)
                    if frame["type"] == "msg":
                        echoed.append(frame["payload"]["text"])
                    elif frame["type"] == "error":
                        assert frame["code"] == "shutting_down", frame
                        refused.append(frame["message"])
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            await sender
            seen_by_bob = []
            with pytest.raises(ConnectionClosed):
                while True:
                    frame = await b.recv(timeout=10)
                    if frame["type"] == "msg":
                        seen_by_bob.append(frame["payload"]["text"])
            assert seen_by_bob == echoed
            return echoed, refused, sent

        echoed, refused, sent = run(go())
        assert srv.stop(timeout=10) in (0, -signal.SIGTERM)
        assert refused, "no message was refused while the server stopped"
        # messages are handled in order: what was accepted is a prefix, everything after it refused
        accepted = len(echoed) - 1
        assert echoed == ["before"] + [f"during-{i}" for i in range(accepted)]
        assert accepted + len(refused) <= sent
        srv.args = ["--db", db]  # the same history, no commit delay
        srv.start()
        stored = [m["text"] for m in get_json(srv.url + "/api/rooms/lobby/messages?limit=1000")["messages"]]
        assert stored == echoed  # nothing refused was stored

        async def again() -> str:
            c = await Client.open(srv.ws_url)
            await c.join("alice")
            await c.say(f"during-{accepted}")  # the first refused one, sent again after reconnecting
            return (await c.recv_type("msg"))["payload"]["text"]

        assert run(again()) == f"during-{accepted}"
    finally:
        srv.stop()


# --- 4. history_limit 0, replay_limit 0 ---------------------------------------------------


def test_history_limit_0_sends_no_history_and_replay_limit_0_replays_all_that_is_kept() -> None:
    """protocol.md, join: "without `since` the last `history_limit` messages (default 100; 0 sends
    none); with `since` ... (at most `replay_limit`, default 1000, the newest ones; 0: all that
    are kept)". 1,100 messages: more than the default replay limit."""
    n = 1100
    with client(history_limit=0, replay_limit=0) as c:
        with c.websocket_connect("/ws") as ws:
            join(ws, "poster")
            for i in range(n):
                send(ws, {"type": "msg", "payload": {"text": f"m{i}"}})
            got = 0
            while got < n:
                got += json.loads(ws.receive_text())["type"] == "msg"
            with c.websocket_connect("/ws") as fresh:
                before, welcome = join(fresh, "fresh")
                assert welcome["type"] == "welcome" and welcome["payload"]["last_id"] == n
                assert before == []  # history_limit 0: not one message
            with c.websocket_connect("/ws") as back:
                before, welcome = join(back, "back", since=0)
                assert [f["payload"]["id"] for f in before] == list(range(1, n + 1))
                assert welcome["payload"]["gap"] is None
            with c.websocket_connect("/ws") as back:
                before, welcome = join(back, "back", since=n - 10)
                assert [f["payload"]["id"] for f in before] == list(range(n - 9, n + 1))
    with client(history_limit=0, replay_limit=0, history_keep=50) as c, c.websocket_connect("/ws") as ws:
        join(ws, "poster")
        say_many(ws, 60)
        with c.websocket_connect("/ws") as back:
            before, welcome = join(back, "back", since=0)
            # all that are kept (the 50 newest), and the hole before them said
            assert [f["payload"]["id"] for f in before] == list(range(11, 61))
            assert welcome["payload"]["gap"] == {"after": 0, "first": 11}


def say_many(ws: Any, n: int) -> None:
    """Send messages m0..m<n-1> and read until their n echoes came back."""
    for i in range(n):
        send(ws, {"type": "msg", "payload": {"text": f"m{i}"}})
    got = 0
    while got < n:
        got += json.loads(ws.receive_text())["type"] == "msg"


# --- 6. /healthz messages and commits ------------------------------------------------------------


def test_healthz_counts_messages_and_history_batches_apart() -> None:
    """protocol.md, HTTP: "`messages`: sent since start; `commits`: history batches written".
    With --commit-delay the writer gathers a burst into few batches, so the two counts part."""
    with client(commit_delay=0.3) as c, c.websocket_connect("/ws") as ws:
        join(ws, "counter")
        say_many(ws, 30)
        health = c.get("/healthz").json()
        assert health["messages"] == 30
        assert 1 <= health["commits"] <= 3  # a burst sent at once: one batch, or a few


# --- 7. resume tokens under CHAT_SECRET ------------------------------------------------------


ANN = {"Authorization": "Basic " + base64.b64encode(b"ann:pw").decode()}


def login_server(secret: str) -> TestClient:
    """The FastAPI server with one login (HTTP Basic), CHAT_SECRET given, history in memory."""
    return TestClient(
        create_app(settings(env={"CHAT_SECRET": secret, "CHAT_AUTH": "ann:pw"})), base_url="http://127.0.0.1"
    )


def test_login_tokens_are_fixed_per_login_and_tied_to_chat_secret_across_restarts() -> None:
    """protocol.md, join: with logins "the token (fixed per login) only serves to replace one's own
    older connection"; welcome: "`token`: resume token for this name (valid ... across restarts
    while the server keeps its secret)"; README: "`CHAT_SECRET` as a secret, so resume tokens stay
    valid across restarts". History in memory: only the secret carries over a restart."""
    one, other = "s" * 32, "t" * 32
    with login_server(one) as c:
        tokens = []
        for room in ("red", "blue"):
            with c.websocket_connect("/ws", headers=ANN) as ws:
                tokens.append(join(ws, "ann", room=room)[1]["payload"]["token"])
        assert tokens[0] == tokens[1]  # fixed per login
        token = tokens[0]
    with login_server(one) as c:  # restarted with the same CHAT_SECRET
        with c.websocket_connect("/ws", headers=ANN) as old, c.websocket_connect("/ws", headers=ANN) as new:
            _, held = join(old, "ann")
            assert held["payload"]["token"] == token
            _, again = join(new, "ann", token=token)  # the token from before the restart takes the name over
            assert again["type"] == "welcome" and again["payload"]["user"] == "ann"
            with pytest.raises(WebSocketDisconnect) as info:
                while True:
                    old.receive_text()
            assert info.value.code == 4001
    with login_server(other) as c, c.websocket_connect("/ws", headers=ANN) as old:
        with c.websocket_connect("/ws", headers=ANN) as new:
            _, held = join(old, "ann")
            assert held["payload"]["token"] != token
            _, refused = join(new, "ann", token=token)
            assert refused["type"] == "error" and refused["code"] == "bad_token"


def test_ws_tickets_follow_chat_secret_across_restarts() -> None:
    """README options: "`--secret`: Secret for login tokens and /ws tickets" (the tickets' half):
    a page's ticket from `GET /api/me` still opens /ws after a restart with the same CHAT_SECRET,
    and not under another secret."""
    one, other = "s" * 32, "t" * 32
    with login_server(one) as c:
        ticket = c.get("/api/me", headers=ANN).json()["ticket"]
    page = {**ANN, "host": "chat.example", "origin": "http://chat.example"}  # a page: it must show a ticket
    with login_server(one) as c, c.websocket_connect(f"/ws?ticket={ticket}", headers=page) as ws:
        assert join(ws, "ann")[1]["type"] == "welcome"
    with login_server(other) as c:
        with pytest.raises(WebSocketDenialResponse) as refused:
            with c.websocket_connect(f"/ws?ticket={ticket}", headers=page) as ws:
                send(ws, {"type": "ping"})
                ws.receive_text()
        assert refused.value.status_code == 403
        fresh = c.get("/api/me", headers=ANN).json()["ticket"]
        with c.websocket_connect(f"/ws?ticket={fresh}", headers=page) as ws:
            assert join(ws, "ann")[1]["type"] == "welcome"


# --- 9. a peer that never takes the close frame ---------------------------------------------


def tcp_lines(server_port: int, client_port: int) -> list[str]:
    """The /proc/net/tcp lines of the connection, both ends (state st: 01 established, 08 close-wait...)."""
    out = []
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            ports = {int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)}
            if ports == {server_port, client_port}:
                out.append(" ".join(fields[1:5] + fields[9:10]))
    return out


def server_holds_socket(pid: int, server_port: int, client_port: int) -> bool:
    """Whether process ``pid`` still has the TCP socket of the connection from ``client_port``
    open (/proc/net/tcp: an orphaned or closed socket has no inode in the process's fds)."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if (
                int(fields[1].split(":")[1], 16) == server_port
                and int(fields[2].split(":")[1], 16) == client_port
                and fields[9] != "0"
            ):
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            pass
    return False


DROP_WITHIN = 5.0 + 5.0  # outbox.CLOSE_TIMEOUT, and a margin for a loaded machine (never: the bug)


@pytest.fixture(scope="module")
def unread_close(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real server; a raw client joins, then sends messages to itself and reads nothing, until
    its outbox overflows and the server's 1013 close frame has nowhere to go. What happens
    then, timed from the overflow: when the chat let the connection go, when the server
    process let its socket go, and what the client finds when it reads at last."""
    if not LINUX:
        pytest.skip("reads /proc/net/tcp")
    tmp = tmp_path_factory.mktemp("unread_close")
    srv = ServerProcess(
        ["--db", ":memory:", "--outbox", "20", "--send-buffer", "16384", "--max-text", "60000"],
        log_path=tmp / "s.log",
    )
    srv.start()
    try:
        raw = RawClient(srv.port)
        raw.join("mute")
        raw.sock.settimeout(0.5)
        body, overflow = "x" * 4000, None
        for i in range(200):
            try:
                raw.send({"type": "msg", "payload": {"text": f"{i}:{body}"}})
            except TimeoutError:
                pass
            if get_json(srv.url + "/healthz")["overflow_closes"]:
                overflow = time.monotonic()
                break
        assert overflow is not None, "the client that reads nothing was never closed"
        held = server_holds_socket(srv.proc.pid, srv.port, raw.port)
        seen: dict[str, Any] = {"detached": None, "released": None}
        while time.monotonic() - overflow < DROP_WITHIN and None in seen.values():
            if seen["detached"] is None and get_json(srv.url + "/healthz")["connections"] == 0:
                seen["detached"] = time.monotonic() - overflow
            if seen["released"] is None and not server_holds_socket(srv.proc.pid, srv.port, raw.port):
                seen["released"] = time.monotonic() - overflow
            time.sleep(0.1)
        seen["tcp_at_deadline"] = tcp_lines(srv.port, raw.port)  # (state, tx/rx queues: for a failure's message)
        seen["health_at_deadline"] = get_json(srv.url + "/healthz")
        seen["frames"] = raw.read_to_the_end()
        seen["held_at_overflow"] = held
        raw.close()
        return seen
    finally:
        srv.stop()


def test_a_peer_that_never_takes_its_close_frame_is_let_go_by_the_chat(unread_close: dict[str, Any]) -> None:
    """security.md: "A peer that will not even take the close frame is dropped after 5 seconds"
    (the chat's half: the connection leaves the hub, /healthz stops counting it)."""
    assert unread_close["detached"] is not None, f"still counted {DROP_WITHIN}s after its close was due"
    assert unread_close["held_at_overflow"]  # the scenario: /proc showed the server's socket to begin with
    opcodes = {op for op, _ in unread_close["frames"]}
    assert 8 not in opcodes and 1 in opcodes  # and the client got text, never the close frame


def test_a_peer_that_never_takes_its_close_frame_loses_its_socket(unread_close: dict[str, Any]) -> None:
    """security.md: "A peer that will not even take the close frame is dropped after 5 seconds"
    (the socket's half: the server process no longer holds the TCP connection)."""
    assert unread_close["released"] is not None, (
        f"the server still holds the socket {DROP_WITHIN}s on; /proc/net/tcp then: {unread_close['tcp_at_deadline']}, "
        f"/healthz: {unread_close['health_at_deadline']}"
    )


# --- 10. --send-buffer -------------------------------------------------------------------------


@pytest.mark.skipif(not LINUX, reason="TIOCOUTQ and Linux's doubled SO_SNDBUF")
def test_send_buffer_caps_the_kernel_buffer_of_a_chat_socket() -> None:
    """security.md: "The kernel's send buffer per chat socket is capped at `--send-buffer` bytes."
    The server's own accepted socket: SO_SNDBUF is the setting (Linux reports it doubled), and
    for a client that reads nothing the kernel holds at most that much before frames wait in
    the outbox (uncapped, Linux takes MiBs)."""
    n = 24576
    with uvicorn_thread(settings(send_buffer=n, max_text=60000, outbox=100_000, stall_timeout=0)) as (app, server, _):
        raw = RawClient(server.config.port)
        raw.join("mute")

        def chat_socket() -> Any:
            (proto,) = [
                p
                for p in list(server.server_state.connections)
                if isinstance(p, ChatWebSocketProtocol) and p.client and p.client[1] == raw.port
            ]
            return proto.transport.get_extra_info("socket")

        sock = on_loop(app, chat_socket)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) in (n, 2 * n)

        def state() -> tuple[int, int]:
            (member,) = app.state.chat.hub.members
            unsent = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
            return len(member.outbox), unsent

        body, most, waiting = "x" * 3000, 0, 0
        for i in range(400):  # 1.2 MB at most
            raw.send({"type": "msg", "payload": {"text": f"{i}:{body}"}})
            time.sleep(0.002)
            waiting, unsent = on_loop(app, state)
            most = max(most, unsent)
            if waiting >= 5:
                break
        raw.close()
        assert waiting >= 5, f"the kernel took {most} bytes for a client that reads nothing, and wanted more"
        assert 0 < most <= 2 * n


# --- 11. flood refusals forgiven at `rate` ---------------------------------------------------


def test_flood_refusals_are_forgiven_at_the_rate_setting_over_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """protocol.md, limits: "every `rate_limited` refusal, for any of the above, adds up (forgiven
    at `rate` per second); past `flood_limit` (default 20) the connection is closed with 1008".
    Through /ws, on a clock the test turns: frames refused by `frame_rate` (1/s) as fast as `rate`
    (5/s) forgives them never close the socket; one more a second does, within 20 s."""
    now = [1000.0]
    monkeypatch.setattr(limits, "time", type("Clock", (), {"monotonic": staticmethod(lambda: now[0])}))
    with client(env={"CHAT_FRAME_RATE": "1"}, rate=5, burst=10, flood_limit=20) as c, c.websocket_connect("/ws") as ws:

        def second(frames: int) -> int:
            """One clock second: ``frames`` pings; the number refused."""
            now[0] += 1.0
            for _ in range(frames):
                send(ws, {"type": "ping"})
            answers = [json.loads(ws.receive_text()) for _ in range(frames)]
            assert {a["type"] for a in answers} <= {"pong", "error"}
            return sum(a["type"] == "error" and a["code"] == "rate_limited" for a in answers)

        refused = sum(second(6) for _ in range(60))  # 1 answered, 5 refused, 5 forgiven: every second
        assert refused >= 5 * 59
        with pytest.raises(WebSocketDisconnect) as info:
            for _ in range(20):
                second(7)  # 6 refused a second: one more than is forgiven
        assert info.value.code == 1008


# --- 12. max_frame at the WebSocket layer ----------------------------------------------------


def test_a_real_server_reads_a_frame_of_max_frame_bytes_and_closes_1009_one_byte_over() -> None:
    """protocol.md, transport: "A message larger than `max_frame` bytes ... closes the connection
    with code 1009", so one of exactly `max_frame` bytes is read. Under uvicorn a second limit
    applies before the app's (its ws_max_size), which TestClient never meets."""
    size = 8192
    with uvicorn_thread(settings(max_frame=size, max_text=60000)) as (_, _, port):

        async def go() -> None:
            c = await Client.open(f"ws://127.0.0.1:{port}/ws", max_size=None)
            await c.join("big")
            frame = json.dumps({"type": "msg", "payload": {"text": ""}})
            exact = frame.replace('""', '"' + "x" * (size - len(frame)) + '"')
            assert len(exact.encode()) == size
            await c.send(exact)
            assert len((await c.recv_type("msg"))["payload"]["text"]) == size - len(frame)
            await c.send(exact.replace('"x', '"xx'))
            with pytest.raises(ConnectionClosed) as info:
                await c.recv_type("never")
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009

        run(go())
