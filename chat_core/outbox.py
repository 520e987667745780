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

CLOSE_TIMEOUT = 5.0  # seconds to get a close frame out before giving up on the peer


class Outbox:
    __slots__ = ("_send", "_close", "_limit", "_queue", "_waiter", "_close_code", "_close_reason", "task", "closed")

    def __init__(self, send: SendFn, close: CloseFn, limit: int) -> None:
        self._send = send
        self._close = close
        self._limit = limit
        self._queue: deque[str] = deque()
        self._waiter: Optional[asyncio.Future[None]] = None
        self._close_code = 0
        self._close_reason = ""
        self.task: Optional[asyncio.Task[None]] = None
        self.closed = False  # no more frames will be sent

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, frame: str) -> bool:
        """Queue one frame without waiting. False when the connection is (now) closing."""
        if self.closed:
            return False
        if self._limit and len(self._queue) >= self._limit:
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
        task = self.task
        if task is not None and (drop or self._waiter is not None):
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
            elif drop and not task.done():
                task.cancel()  # it may be stuck writing to a peer that does not read

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        try:
            while True:
                while queue:
                    await self._send(queue.popleft())
                if self.closed:
                    break
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
            except Exception as exc:
                log.debug("close failed: %r", exc)
