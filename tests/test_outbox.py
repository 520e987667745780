"""The outbox in-process, with a frame writer whose socket fills and drains on
command: frames go out at once, in order, wait while the socket is full, and a
client that stalls is closed with 1013 after the queue limit or the stall timeout.
(The real writer, chat_core.transport, is used by every server test.)"""

import asyncio
import json
from collections.abc import Callable
from typing import Optional

from chat_core.outbox import DirectOutbox
from chat_core.protocol import CloseCode, encode, wire


class Socket:
    """A FrameWriter over a list: ``full`` makes it refuse, ``drain()`` takes more."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0
        self.full = False
        self.gone = False
        self.send_buffer = 0
        self.drained: Optional[Callable[[], None]] = None

    def write_frame(self, frame: bytes) -> Optional[bool]:
        if self.gone:
            return None
        if self.full:
            return False
        self.data += frame
        self.writes += 1
        return True

    def set_send_buffer(self, size: int) -> None:
        self.send_buffer = size

    def abort(self) -> None:
        self.gone = True

    def linger(self, seconds: float) -> None:
        self.lingered = seconds

    def drain(self) -> None:
        self.full = False
        if self.drained is not None:
            self.drained()

    def frames(self) -> list:
        """The text frames written, decoded (all short here: 2-byte headers)."""
        out, data = [], bytes(self.data)
        while data:
            assert data[0] == 0x81 and data[1] < 126
            out.append(json.loads(data[2:2 + data[1]]))
            data = data[2 + data[1]:]
        return out


class Conn:
    def __init__(self, limit: int = 10, stall: float = 0.0) -> None:
        self.socket = Socket()
        self.sent_by_asgi: list = []
        self.closed_with: Optional[int] = None
        self.outbox = DirectOutbox(self._send, limit, self.socket, stall_timeout=stall)
        self.outbox.start()

    async def _send(self, message: dict) -> None:  # the connection's ASGI send
        if message["type"] == "websocket.send":
            self.sent_by_asgi.append(message["text"])
        elif message["type"] == "websocket.close":
            self.closed_with = message["code"]


def msg(i: int) -> str:
    return encode({"type": "msg", "payload": {"id": i}})


def ids(frames: list) -> list:
    return [f["payload"]["id"] for f in frames]


def run(coro):
    return asyncio.run(coro)


def test_frames_go_straight_to_the_socket_with_no_task():
    async def main():
        c = Conn()
        for i in range(5):
            assert c.outbox.put(msg(i), wire(msg(i)))
        assert c.outbox.put(msg(5))  # without the encoded bytes: encoded here
        assert ids(c.socket.frames()) == [0, 1, 2, 3, 4, 5]
        assert c.socket.writes == 6 and len(c.outbox) == 0
        assert c.outbox.task is None and c.sent_by_asgi == []
    run(main())


def test_a_full_socket_queues_then_drains_in_order_in_one_write():
    async def main():
        c = Conn(limit=100)
        c.outbox.put(msg(0))
        c.socket.full = True
        for i in range(1, 11):
            assert c.outbox.put(msg(i))
        assert len(c.outbox) == 10 and ids(c.socket.frames()) == [0]
        c.socket.drain()
        assert ids(c.socket.frames()) == list(range(11))
        assert c.socket.writes == 2  # the ten waiting frames left in one write
        assert c.outbox.put(msg(11)) and ids(c.socket.frames())[-1] == 11
    run(main())


def test_history_burst_is_one_write_and_not_counted_against_the_limit():
    async def main():
        c = Conn(limit=3)
        c.outbox.put_many([msg(i) for i in range(50)])
        assert ids(c.socket.frames()) == list(range(50)) and c.socket.writes == 1
        c.socket.full = True
        c.outbox.put_many([msg(i) for i in range(50, 60)])
        assert c.outbox.put(msg(60)) and c.outbox.put(msg(61))  # the burst does not use up the limit
        c.socket.drain()
        assert ids(c.socket.frames()) == list(range(62)) and not c.outbox.closed
    run(main())


def test_overflow_closes_with_1013_and_drops_the_queue():
    async def main():
        c = Conn(limit=5)
        c.socket.full = True
        accepted = [c.outbox.put(msg(i)) for i in range(8)]
        assert accepted == [True] * 5 + [False] * 3
        assert c.outbox.closed and c.outbox.close_code == CloseCode.TRY_AGAIN_LATER and len(c.outbox) == 0
        c.socket.full = False
        await asyncio.wait_for(c.outbox.task, 1)
        assert c.closed_with == CloseCode.TRY_AGAIN_LATER
    run(main())


class Clock:
    """The outbox's loop with a clock the test moves: the stall timeout is checked against
    ``loop.time()``, and a busy machine's late wake-ups must not decide the test."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.now = loop.time()

    def time(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        return getattr(self.loop, name)


def test_no_progress_for_the_stall_timeout_closes_with_1013():
    async def main():
        c = Conn(limit=1000, stall=0.2)
        clock = c.outbox._loop = Clock(asyncio.get_running_loop())
        c.socket.full = True
        assert c.outbox.put(msg(0))
        clock.now += 0.1
        assert c.outbox.put(msg(1))  # stalled for 0.1 s: still within the timeout
        c.socket.drain()  # progress: the clock starts again
        c.socket.full = True
        c.outbox.put(msg(2))
        clock.now += 0.15
        assert c.outbox.put(msg(3)) and not c.outbox.closed
        clock.now += 0.1
        assert not c.outbox.put(msg(4))  # 0.25 s without taking a byte
        assert c.outbox.close_code == CloseCode.TRY_AGAIN_LATER
        await asyncio.wait_for(c.outbox.task, 1)
        assert c.closed_with == CloseCode.TRY_AGAIN_LATER and ids(c.socket.frames()) == [0, 1]
    run(main())


def test_an_idle_connection_is_never_stalled():
    async def main():
        c = Conn(stall=0.05)
        c.outbox.put(msg(0))
        await asyncio.sleep(0.1)
        assert c.outbox.put(msg(1)) and not c.outbox.closed
    run(main())


def test_a_gentle_close_sends_what_waits_first():
    async def main():
        c = Conn()
        c.socket.full = True
        c.outbox.put(msg(0))
        c.outbox.put(msg(1))
        c.outbox.close(1001, "going away", drop=False)
        assert not c.outbox.put(msg(2))
        await asyncio.sleep(0.05)
        assert c.closed_with is None  # still waiting for the socket
        c.socket.drain()
        await asyncio.wait_for(c.outbox.task, 1)
        assert ids(c.socket.frames()) == [0, 1] and c.closed_with == 1001
    run(main())


def test_a_gone_peer_closes_the_outbox_without_a_close_frame():
    async def main():
        c = Conn()
        c.socket.gone = True
        assert not c.outbox.put(msg(0))
        assert c.outbox.closed and c.outbox.close_code == 0 and c.outbox.task is None
    run(main())
