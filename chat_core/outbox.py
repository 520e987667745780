"""A bounded queue of encoded frames for one connection, drained by one
long-lived sender task.

Broadcasting only appends to outboxes, so a client that stops reading never
delays anyone else: its own sender waits on its socket, its queue fills, and on
overflow the connection is closed with 1013 (try again later) instead of letting
the server's memory grow.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Awaitable, Callable, Optional

log = logging.getLogger("chat_core.outbox")

SendFn = Callable[[str], Awaitable[None]]
CloseFn = Callable[[int, str], Awaitable[None]]
AbandonFn = Callable[[], None]

CLOSE_TIMEOUT = 5.0  # seconds to get a close frame out before giving up on the peer


class Outbox:
    __slots__ = ("_send", "_close", "_abandon", "_limit", "_extra", "_queue", "_waiter", "_sending", "_close_code", "_close_reason",
                 "task", "closed")

    def __init__(self, send: SendFn, close: CloseFn, limit: int, abandon: Optional[AbandonFn] = None) -> None:
        self._send = send
        self._close = close
        self._abandon = abandon  # called when even the close frame cannot be delivered
        self._limit = limit
        self._extra = 0  # room for a history burst, until the queue next runs empty
        self._queue: deque[str] = deque()
        self._waiter: Optional[asyncio.Future[None]] = None
        self._sending = False  # the sender is inside a send (maybe stuck on a peer that does not read)
        self._close_code = 0
        self._close_reason = ""
        self.task: Optional[asyncio.Task[None]] = None
        self.closed = False  # no more frames will be sent

    @property
    def close_code(self) -> int:
        """The close code asked for (1013 after an overflow); 0 while open or when the peer left."""
        return self._close_code

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, frame: str) -> bool:
        """Queue one frame without waiting. False when the connection is (now) closing."""
        if self.closed:
            return False
        if self._limit and len(self._queue) >= self._limit + self._extra:
            self.close(1013, "outbox overflow: reading too slowly")
            return False
        self._queue.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def put_many(self, frames: "list[str]") -> None:
        """Queue a burst (history on join) that the limit does not count against."""
        if self.closed:
            return
        self._extra += len(frames)
        self._queue.extend(frames)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self, code: int, reason: str = "", drop: bool = True) -> None:
        """Stop sending and close the socket with ``code``. With ``drop`` the queued frames are discarded."""
        if self.closed:
            return
        self.closed = True
        self._close_code, self._close_reason = code, reason
        if drop:
            self._queue.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        elif drop and self._sending and self.task is not None:
            self.task.cancel()  # stuck writing to a peer that does not read: give up on that frame

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        try:
            while True:
                while queue:
                    self._sending = True
                    try:
                        await self._send(queue.popleft())
                    finally:
                        self._sending = False
                if self.closed:
                    break
                self._extra = 0
                self._waiter = loop.create_future()
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
            try:
                await asyncio.wait_for(self._close(self._close_code, self._close_reason), CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                log.info("peer did not take the close frame within %ss: abandoning it", CLOSE_TIMEOUT)
                if self._abandon is not None:
                    self._abandon()
            except Exception as exc:
                log.debug("close failed: %r", exc)
