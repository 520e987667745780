"""What is on its way to one connection, so that a broadcast never waits on a socket.

The hub sees one small interface, :class:`Outbox`: ``put`` a frame (already
encoded for the whole room), ``put_many`` a history burst, ``close``. Two
strategies stand behind it:

- :class:`DirectOutbox`, when the server offers a :class:`FrameWriter` (the ASGI
  extension :data:`FRAME_WRITER`, see :mod:`chat_core.transport`): while nothing
  waits, a frame's bytes are written to the socket on the spot (no task, no
  per-recipient encoding); what a full socket cannot take waits here *as those
  same bytes*, in order, and goes out in one joined write when the socket drains.
- :class:`TaskOutbox`, without one: a long-lived sender task per connection
  drains the queue through the connection's ASGI ``send`` (which takes text).

A client that stops reading never delays anyone else; its queue fills, and once
it holds ``limit`` frames, or has made no progress for ``stall_timeout`` seconds,
the connection is closed with 1013 (try again later): server memory stays
bounded, and the client resumes from its last id when it reconnects.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Optional, Protocol, Union

from .protocol import CloseCode, wire

log = logging.getLogger("chat_core.outbox")

Send = Callable[[dict[str, Any]], Awaitable[None]]  # the connection's ASGI send

FRAME_WRITER = "chat_core.frame_writer"  # the ASGI scope extension a FrameWriter is published under
FLUSH_FRAMES = 64  # frames joined into one write when a full socket drains
CLOSE_TIMEOUT = 5.0  # seconds to get a close frame out before giving up on the peer


class FrameWriter(Protocol):
    """Writes whole WebSocket frames to one socket, without waiting."""

    drained: Optional[Callable[[], None]]  # called when a socket that was full can take more

    def write_frame(self, frame: bytes) -> Optional[bool]:
        """True: written. False: the socket is full. None: it is closing or gone."""

    def set_send_buffer(self, size: int) -> None:
        """Cap the kernel's send buffer for this socket."""

    def abort(self) -> None:
        """Drop the connection at once, whatever is unsent."""

    def linger(self, seconds: float) -> None:
        """Drop the connection ``seconds`` from now if bytes are still unsent then."""


class State(enum.Enum):
    OPEN = "open"  # frames are taken
    CLOSING = "closing"  # a close was asked for: what is queued (if kept) goes out, then the close frame
    GONE = "gone"  # the peer is gone (or the close is done): nothing more is sent


class Outbox:
    """The part both strategies share: the limit, the stall clock and the state."""

    __slots__ = ("_send", "_limit", "_stall", "_extra", "_queue", "_since", "_close_code", "_close_reason",
                 "_loop", "state", "on_abandon", "abandoned", "task")

    def __init__(self, send: Send, limit: int, stall_timeout: float = 0.0,
                 on_abandon: Optional[Callable[[], Any]] = None) -> None:
        self._send = send
        self._limit = limit
        self._stall = stall_timeout
        self._extra = 0  # room for a history burst, until the queue next runs empty
        self._queue: list[Any] = []  # a list, not a deque: 56 bytes while empty, as it nearly always is
        self._since = 0.0  # loop time of the last progress while frames were waiting
        self._close_code = 0
        self._close_reason = ""
        self._loop = asyncio.get_running_loop()
        self.state = State.OPEN
        self.on_abandon = on_abandon  # called when even the close frame cannot be delivered
        self.abandoned = False
        self.task: Optional[asyncio.Task[None]] = None  # the sender (TaskOutbox), or the closer

    @property
    def closed(self) -> bool:
        """No more frames will be sent."""
        return self.state is not State.OPEN

    @property
    def close_code(self) -> int:
        """The close code asked for (1013 after an overflow); 0 while open or when the peer left."""
        return self._close_code

    @property
    def direct(self) -> bool:
        """Frames go straight to the socket through a frame writer (else through ASGI sends)."""
        return False

    def __len__(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        """Begin sending (a TaskOutbox starts its sender)."""

    def put(self, frame: str, encoded: Optional[bytes] = None) -> bool:
        """Queue or write one frame without waiting; ``encoded`` is ``wire(frame)``
        when the caller has it. False when the connection is (now) closing."""
        raise NotImplementedError

    def put_many(self, frames: list[str]) -> None:
        """Queue a burst (history on join) that the limit does not count against."""
        raise NotImplementedError

    def close(self, code: int, reason: str = "", drop: bool = True) -> None:
        """Stop taking frames and close the socket with ``code`` (0: the peer is gone,
        send nothing). With ``drop`` the queued frames are discarded, else sent first."""
        raise NotImplementedError

    def _begin_close(self, code: int, reason: str, drop: bool) -> bool:
        """Shared first half of :meth:`close`; False when already closed."""
        if self.closed:
            return False
        self.state = State.CLOSING if code else State.GONE
        self._close_code, self._close_reason = code, reason
        if drop:
            self._queue.clear()
        return True

    def _refused(self) -> bool:
        """Before queueing a frame behind others: close (1013) when the waiting ones made
        no progress for ``stall_timeout``, or the queue is full."""
        if self._queue and self._stall and self._loop.time() - self._since > self._stall:
            self.close(CloseCode.TRY_AGAIN_LATER, f"no progress for {self._stall:g}s: reading too slowly")
            return True
        if self._limit and len(self._queue) >= self._limit + self._extra:
            self.close(CloseCode.TRY_AGAIN_LATER, "outbox overflow: reading too slowly")
            return True
        return False

    async def _send_close(self) -> None:
        try:
            await asyncio.wait_for(self._send({"type": "websocket.close", "code": self._close_code,
                                               "reason": self._close_reason}), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            log.info("peer did not take the close frame within %ss: abandoning it", CLOSE_TIMEOUT)
            self.abandoned = True
            if self.on_abandon is not None:
                self.on_abandon()
        except Exception as exc:
            log.debug("close failed: %r", exc)
        self.state = State.GONE


class DirectOutbox(Outbox):
    """Frames written straight to the socket; what it cannot take waits as bytes."""

    __slots__ = ("_writer", "_drained")

    def __init__(self, send: Send, limit: int, writer: FrameWriter, stall_timeout: float = 0.0,
                 on_abandon: Optional[Callable[[], Any]] = None) -> None:
        super().__init__(send, limit, stall_timeout, on_abandon)
        self._writer = writer
        self._drained: Optional[asyncio.Future[None]] = None  # a close waiting for the queue to empty
        writer.drained = self._flush

    @property
    def direct(self) -> bool:
        return True

    def put(self, frame: str, encoded: Optional[bytes] = None) -> bool:
        if self.closed:
            return False
        data = encoded if encoded is not None else wire(frame)
        queue = self._queue
        if not queue:
            done = self._writer.write_frame(data)
            if done:
                return True
            if done is None:
                self.close(0)  # the peer is gone; the receive side ends the session
                return False
            self._since = self._loop.time()
        if self._refused():
            return False
        queue.append(data)
        return True

    def put_many(self, frames: list[str]) -> None:
        if self.closed or not frames:
            return
        self._extra += len(frames)
        queue = self._queue
        was_empty = not queue
        if was_empty:
            self._since = self._loop.time()
        queue.extend(wire(frame) for frame in frames)
        if was_empty:  # nothing was waiting: the socket can take it now
            self._flush()

    def close(self, code: int, reason: str = "", drop: bool = True) -> None:
        if not self._begin_close(code, reason, drop):
            return
        self._writer.drained = self._flush if self._queue else None
        if code:
            self.task = self._loop.create_task(self._close_when_drained())

    def _flush(self) -> None:
        """The socket can take more: write what waits, in one write, until it is full again."""
        queue, writer = self._queue, self._writer
        while queue:
            n = min(len(queue), FLUSH_FRAMES)
            done = writer.write_frame(b"".join(queue[:n]))
            if not done:
                if done is None:
                    queue.clear()
                    self.close(0)
                break
            del queue[:n]
            self._since = self._loop.time()
        if not queue:
            self._extra = 0
            drained = self._drained
            if drained is not None and not drained.done():
                drained.set_result(None)

    async def _close_when_drained(self) -> None:
        if self._queue:
            self._drained = self._loop.create_future()
            try:
                await asyncio.wait_for(self._drained, CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                pass  # the close below times out too, and the peer is abandoned
        await self._send_close()
        if self.abandoned:  # (the route may have stopped listening for that already: drop it here)
            self._writer.abort()
        else:  # the close frame is in the socket's buffer, maybe not out of it
            self._writer.linger(CLOSE_TIMEOUT)


class TaskOutbox(Outbox):
    """One long-lived sender task drains the queue through ASGI sends (text)."""

    __slots__ = ("_waiter", "_sending")

    def __init__(self, send: Send, limit: int, stall_timeout: float = 0.0,
                 on_abandon: Optional[Callable[[], Any]] = None) -> None:
        super().__init__(send, limit, stall_timeout, on_abandon)
        self._waiter: Optional[asyncio.Future[None]] = None
        self._sending = False  # the sender is inside a send (maybe stuck on a peer that does not read)

    def start(self) -> None:
        self.task = self._loop.create_task(self._run())

    def put(self, frame: str, encoded: Optional[bytes] = None) -> bool:
        if self.closed:
            return False
        queue = self._queue
        if not queue and not self._sending:  # (a sender stuck mid-send made its last progress before)
            self._since = self._loop.time()
        if self._refused():
            return False
        queue.append(frame)
        self._wake()
        return True

    def put_many(self, frames: list[str]) -> None:
        if self.closed or not frames:
            return
        self._extra += len(frames)
        if not self._queue:
            self._since = self._loop.time()
        self._queue.extend(frames)
        self._wake()

    def close(self, code: int, reason: str = "", drop: bool = True) -> None:
        if not self._begin_close(code, reason, drop):
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif drop and self._sending and self.task is not None:
            self.task.cancel()  # stuck writing to a peer that does not read: give up on that frame

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _run(self) -> None:
        queue = self._queue
        try:
            while True:
                while queue:
                    self._sending = True
                    try:
                        await self._send({"type": "websocket.send", "text": queue.pop(0)})
                    finally:
                        self._sending = False
                    self._since = self._loop.time()
                if self.closed:
                    break
                self._extra = 0
                self._waiter = self._loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        except asyncio.CancelledError:
            if not self.closed:
                raise
        except Exception as exc:  # the peer went away mid-send: the receive side will see it too
            log.debug("send failed: %r", exc)
            self.state = State.GONE
            return
        if self._close_code:
            await self._send_close()


def open_outbox(send: Send, limit: int, writer: Optional[FrameWriter] = None, stall_timeout: float = 0.0,
                on_abandon: Optional[Callable[[], Any]] = None) -> Union[DirectOutbox, TaskOutbox]:
    """The outbox for a connection: direct when the server offers a frame writer."""
    if writer is not None:
        return DirectOutbox(send, limit, writer, stall_timeout, on_abandon)
    return TaskOutbox(send, limit, stall_timeout, on_abandon)
