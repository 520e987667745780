"""What is on its way to one connection, so that a broadcast never waits on a socket.

A broadcast hands every member's outbox the same frame, encoded once. When the
server offers a :class:`FrameWriter` (the ASGI extension :data:`FRAME_WRITER`,
see :mod:`chat_core.transport`) and nothing is queued, the frame's bytes are
written to the socket on the spot: no task, no per-recipient encoding. What a
socket cannot take right now waits here, in order, and goes out when the socket
drains. Without a frame writer, one long-lived sender task per connection
drains the queue through the connection's ASGI ``send``.

A client that stops reading never delays anyone else; its queue fills, and once
it holds ``limit`` frames, or has made no progress for ``stall_timeout``
seconds, the connection is closed with 1013 (try again later): server memory
stays bounded, and the client resumes from its last id when it reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Optional, Protocol

from .protocol import wire

log = logging.getLogger("chat_core.outbox")

Send = Callable[[dict[str, Any]], Awaitable[None]]  # the connection's ASGI send

FRAME_WRITER = "chat_core.frame_writer"  # the ASGI scope extension a FrameWriter is published under
FLUSH_FRAMES = 64  # frames joined into one write when a full socket drains
CLOSE_TIMEOUT = 5.0  # seconds to get a close frame out before giving up on the peer
OVERFLOW = 1013  # close code for a client that reads too slowly: "try again later"


class FrameWriter(Protocol):
    """Writes whole WebSocket frames to one socket, without waiting."""

    drained: Optional[Callable[[], None]]  # called when a socket that was full can take more

    def write_frame(self, frame: bytes) -> Optional[bool]:
        """True: written. False: the socket is full. None: it is closing or gone."""

    def set_send_buffer(self, size: int) -> None:
        """Cap the kernel's send buffer for this socket."""


class Outbox:
    __slots__ = ("_send", "_writer", "_limit", "_stall", "_extra", "_queue", "_since", "_waiter", "_sending",
                 "_drained", "_close_code", "_close_reason", "_loop", "on_abandon", "abandoned", "task", "closed")

    def __init__(self, send: Send, limit: int, writer: Optional[FrameWriter] = None, stall_timeout: float = 0.0,
                 on_abandon: Optional[Callable[[], Any]] = None) -> None:
        self._send = send
        self._writer = writer
        self._limit = limit
        self._stall = stall_timeout
        self._extra = 0  # room for a history burst, until the queue next runs empty
        self._queue: list[str] = []  # a list, not a deque: 56 bytes while empty, as it nearly always is
        self._since = 0.0  # loop time of the last progress while frames were waiting
        self._waiter: Optional[asyncio.Future[None]] = None
        self._sending = False  # the sender is inside a send (maybe stuck on a peer that does not read)
        self._drained: Optional[asyncio.Future[None]] = None  # a close waiting for the queue to empty
        self._close_code = 0
        self._close_reason = ""
        self._loop = asyncio.get_running_loop()
        self.on_abandon = on_abandon  # called when even the close frame cannot be delivered
        self.abandoned = False
        self.task: Optional[asyncio.Task[None]] = None  # the sender (no writer), or the closer
        self.closed = False  # no more frames will be sent
        if writer is not None:
            writer.drained = self._flush

    @property
    def close_code(self) -> int:
        """The close code asked for (1013 after an overflow); 0 while open or when the peer left."""
        return self._close_code

    @property
    def direct(self) -> bool:
        """Frames go straight to the socket through a frame writer (else through ASGI sends)."""
        return self._writer is not None

    def start(self) -> None:
        """Start the sender task; with a frame writer there is none until a close."""
        if self._writer is None:
            self.task = self._loop.create_task(self._run())

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, frame: str, encoded: Optional[bytes] = None) -> bool:
        """Queue or write one frame without waiting; ``encoded`` is ``wire(frame)``
        when the caller has it. False when the connection is (now) closing."""
        if self.closed:
            return False
        queue = self._queue
        if not queue:
            writer = self._writer
            if writer is not None:
                done = writer.write_frame(encoded if encoded is not None else wire(frame))
                if done:
                    return True
                if done is None:
                    self.close(0)  # the peer is gone; the receive side ends the session
                    return False
            if not self._sending:  # (a sender stuck mid-send made its last progress before)
                self._since = self._loop.time()
        elif self._stall and self._loop.time() - self._since > self._stall:
            self.close(OVERFLOW, f"no progress for {self._stall:g}s: reading too slowly")
            return False
        if self._limit and len(queue) >= self._limit + self._extra:
            self.close(OVERFLOW, "outbox overflow: reading too slowly")
            return False
        queue.append(frame)
        self._wake()
        return True

    def put_many(self, frames: "list[str]") -> None:
        """Queue a burst (history on join) that the limit does not count against."""
        if self.closed or not frames:
            return
        self._extra += len(frames)
        queue = self._queue
        if not queue:
            self._since = self._loop.time()
        queue.extend(frames)
        if self._writer is None:
            self._wake()
        elif len(queue) == len(frames):  # nothing was waiting: the socket can take it now
            self._flush()

    def close(self, code: int, reason: str = "", drop: bool = True) -> None:
        """Stop sending and close the socket with ``code`` (0: the peer is gone, send
        nothing). With ``drop`` the queued frames are discarded, else sent first."""
        if self.closed:
            return
        self.closed = True
        self._close_code, self._close_reason = code, reason
        if drop:
            self._queue.clear()
        if self._writer is not None:
            self._writer.drained = None if not self._queue else self._flush
            if code:
                self.task = self._loop.create_task(self._close_when_drained())
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif drop and self._sending and self.task is not None:
            self.task.cancel()  # stuck writing to a peer that does not read: give up on that frame

    # --- with a frame writer ----------------------------------------------------

    def _flush(self) -> None:
        """The socket can take more: write what waits, in one write, until it is full again."""
        queue, writer = self._queue, self._writer
        assert writer is not None
        while queue:
            n = min(len(queue), FLUSH_FRAMES)
            done = writer.write_frame(b"".join([wire(frame) for frame in queue[:n]]))
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

    # --- without: the sender task -------------------------------------------------

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
            self.closed = True
            return
        if self._close_code:
            await self._send_close()

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
