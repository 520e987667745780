"""uvicorn's WebSocket protocol plus one thing the chat's fan-out needs: writing a
ready-made frame straight to a socket.

A broadcast encodes its message once into WebSocket frame bytes; through ASGI
each recipient would instead get a ``send`` call that wakes a task, passes two
framework layers and encodes the same text into the same frame again. This
protocol publishes itself in the ASGI scope under the extension
:data:`chat_core.outbox.FRAME_WRITER`, so the chat's outboxes write those bytes
with one ``transport.write`` per recipient (docs/benchmarks.md has the figures).
An app served without it falls back to plain ASGI sends.

It also keeps frames that a socket cannot take in the app's outbox rather than
in the transport: writing pauses as soon as the kernel refuses a byte, which is
when the outbox starts counting how long a client has been stalled.

Use it with ``uvicorn.Config(ws=websocket_protocol())``, or on the command line
``uvicorn app:app --ws chat_core.transport:ChatWebSocketProtocol``.

It reads internals of uvicorn's ``WebSocketsSansIOProtocol``, as found in uvicorn
0.52.1 (the first whose sans-I/O protocol has write flow control: ``pause_writing``
and ``resume_writing``) through 0.54.0 (what the tests run): the instance
attributes :data:`INTERNALS` and the methods :data:`HOOKS`. requirements.txt pins
uvicorn to ``>=0.52.1,<0.55``; :func:`websocket_protocol` checks at startup that
they are all there and otherwise falls back to uvicorn's own protocol (plain ASGI
sends: slower, the same behaviour) with one warning line.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections.abc import Callable
from typing import Any, Optional

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from .admission import PEER
from .outbox import FRAME_WRITER

log = logging.getLogger("chat_core.transport")

# What this module reads or replaces in uvicorn's protocol (uvicorn 0.52.1 to 0.54.0).
INTERNALS = ("queue", "writable", "close_sent", "disconnected", "handshake_complete", "transport", "client",
             "request", "response", "scope")
HOOKS = ("handle_connect", "send", "resume_writing", "pause_writing", "connection_lost")


def missing_internals(base: type = WebSocketsSansIOProtocol) -> list[str]:
    """The internals this protocol relies on that ``base`` does not have (empty: all there)."""
    source = inspect.getsource(base)
    missing = [name for name in HOOKS if not callable(getattr(base, name, None))]
    return missing + [name for name in INTERNALS if f"self.{name}" not in source]


def websocket_protocol() -> type:
    """The WebSocket protocol class to serve with: the chat's, or, when this uvicorn's
    internals are not what it was written against, uvicorn's own (one warning line)."""
    missing = missing_internals()
    if missing:
        import uvicorn

        log.warning("uvicorn %s lacks what chat_core.transport reads (%s): frames go through plain ASGI "
                    "sends instead (slower, same behaviour)", uvicorn.__version__, ", ".join(missing))
        return WebSocketsSansIOProtocol
    return ChatWebSocketProtocol


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    """A :class:`~chat_core.outbox.FrameWriter` for each accepted WebSocket."""

    drained: Optional[Callable[[], None]] = None  # the outbox's flush, called when writing may go on

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # websockets' parser keeps the parsed request until the connection ends; the
        # scope has its own copy of the headers, so let the parsed ones go.
        event.headers.clear()
        scope = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:  # a handshake the app will accept or refuse
            scope["extensions"][FRAME_WRITER] = self
            if self.client:  # the real TCP peer, whatever a proxy-headers layer makes of scope["client"]
                scope["extensions"][PEER] = self.client[0]
            # Pause as soon as the kernel's send buffer is full, so what a slow client
            # cannot take waits in its outbox, counted and timed, not in the transport.
            self.transport.set_write_buffer_limits(high=0)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # A handshake refused with a response of the app's own is complete; uvicorn 0.54
            # does not note it and would log an ERROR for every refusal (a log flood).
            self.handshake_complete = True
        if message["type"] == "websocket.accept":
            # The handshake's request and response (headers and all, a few KB) are
            # not needed once it is complete; uvicorn would keep them to the end.
            self.request = self.response = None  # type: ignore[assignment]

    def write_frame(self, frame: bytes) -> Optional[bool]:
        """True: written. False: the socket is full, try again when ``drained`` is
        called. None: the connection is closing or gone, nothing more can be sent."""
        if self.close_sent or self.disconnected or not self.handshake_complete:
            return None
        if not self.writable.is_set():
            return False
        transport = self.transport
        if transport.is_closing():
            return None
        transport.write(frame)
        return True

    def abort(self) -> None:
        """Let the socket go now, unsent bytes and all: for a peer that took not even
        the close frame (a plain close would wait for it to read, for ever)."""
        self.transport.abort()

    def linger(self, seconds: float) -> None:
        """Our close frame is on its way: if the connection is still open ``seconds``
        from now (the peer took not even that frame, it may sit in the kernel's
        buffers, or it never answered it), let the socket go."""

        def drop() -> None:
            if not self.transport.is_closing() or self.transport.get_write_buffer_size() > 0:
                self.transport.abort()

        asyncio.get_running_loop().call_later(seconds, drop)

    def set_send_buffer(self, size: int) -> None:
        """Cap the kernel's send buffer for this socket (SO_SNDBUF), instead of
        letting Linux grow it to several MiB for a client that does not read."""
        sock: Any = self.transport.get_extra_info("socket")
        if sock is not None and size > 0:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            except OSError:  # not a TCP socket (tests over a Unix socket, say): leave it
                pass

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.drained is not None:
            self.drained()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.drained = None  # the outbox learns it from the disconnect event
        super().connection_lost(exc)


class ReceiveQueue:
    """The receive queue uvicorn's protocol uses (``put_nowait``, ``get``, ``empty``),
    for one reader: asyncio.Queue would hold four deques, ~3 KB per connection."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []  # rarely more than one: uvicorn stops reading while one waits
        self._waiter: Optional[asyncio.Future[None]] = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class Flag:
    """The ``writable`` event uvicorn's protocol uses (``set``, ``clear``, ``is_set``,
    ``wait``), set to begin with; asyncio.Event would hold a deque per connection."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: Optional[list[asyncio.Future[None]]] = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter

