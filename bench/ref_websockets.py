"""Reference 1: the leanest Python chat server we could write, for comparison.

A minimal server on the `websockets` library (its asyncio implementation, on
uvloop) speaking docs/protocol.md: join -> history `msg` frames -> `welcome`;
a `msg` is serialised once with orjson and fanned out with
`websockets.broadcast`, which writes to every socket without awaiting anything.
No persistence: history is a deque of the last 100 frames per room.

It follows the protocol where that costs work the app must do too: rooms,
names unique in a room, join/leave notices up to 200 members and one coalesced
`presence` frame per second above that, `welcome.users` as the first 200 sorted
names, and an outbox bound: a connection whose write buffer passes
--outbox-bytes is closed with 1013 (checked every 0.5 s, the only timer it runs
besides the library's pings). It validates input but keeps the error
handling minimal. It is the near-limit for Python, not a product.

    python bench/ref_websockets.py --port 8765 [--loop asyncio] [--max-seconds 1800]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import os
import re
import time

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

ROOM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}\Z")
HISTORY = 100
NOTICE_LIMIT = 200
USERS_SHOWN = 200
MAX_TEXT = 2000
PRESENCE_INTERVAL = 1.0
SHOWN_CHANGES = 50

dumps = orjson.dumps


def frame(typ: str, payload: dict) -> str:
    return dumps({"type": typ, "payload": payload}).decode()


def error(code: str, message: str) -> str:
    return dumps({"type": "error", "code": code, "message": message}).decode()


class Room:
    __slots__ = ("name", "members", "names", "history", "last_id", "joined", "left", "flush")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[ServerConnection, str] = {}
        self.names: list[str] = []  # sorted, for welcome.users
        self.history: collections.deque[str] = collections.deque(maxlen=HISTORY)
        self.last_id = 0
        self.joined: list[str] = []
        self.left: list[str] = []
        self.flush: asyncio.TimerHandle | None = None

    def notice(self, typ: str, user: str, exclude: ServerConnection | None) -> None:
        if len(self.members) <= NOTICE_LIMIT and self.flush is None:
            others = [c for c in self.members if c is not exclude]
            broadcast(others, frame(typ, {"user": user, "ts": time.time(), "room": self.name}))
            return
        (self.joined if typ == "join" else self.left).append(user)
        if self.flush is None:
            self.flush = asyncio.get_running_loop().call_later(PRESENCE_INTERVAL, self.presence)

    def presence(self) -> None:
        self.flush = None
        joined, left = self.joined, self.left
        self.joined, self.left = [], []
        more = max(0, len(joined) - SHOWN_CHANGES) + max(0, len(left) - SHOWN_CHANGES)
        broadcast(
            self.members,
            frame(
                "presence",
                {
                    "room": self.name,
                    "online": len(self.members),
                    "joined": joined[:SHOWN_CHANGES],
                    "left": left[:SHOWN_CHANGES],
                    "more": more,
                    "ts": time.time(),
                },
            ),
        )


rooms: dict[str, Room] = {}


def leave(conn: ServerConnection, room: Room | None) -> None:
    if room is None:
        return
    user = room.members.pop(conn, None)
    if user is None:
        return
    i = bisect.bisect_left(room.names, user)
    if i < len(room.names) and room.names[i] == user:
        del room.names[i]
    room.notice("leave", user, None)


async def handler(conn: ServerConnection) -> None:
    room: Room | None = None
    user = ""
    try:
        async for raw in conn:
            if isinstance(raw, bytes):
                await conn.send(error("binary_not_supported", "Binary frames are not supported."))
                continue
            try:
                d = orjson.loads(raw)
            except orjson.JSONDecodeError:
                await conn.send(error("bad_json", "The frame is not valid JSON."))
                continue
            typ = d.get("type") if isinstance(d, dict) else None
            p = d.get("payload", {}) if isinstance(d, dict) else None
            if not isinstance(typ, str) or not isinstance(p, dict):
                await conn.send(error("bad_frame", "Expected an object with a string type."))
                continue
            if typ == "msg":
                if room is None:
                    await conn.send(error("not_joined", "Join first."))
                    continue
                text = p.get("text")
                if not isinstance(text, str):
                    await conn.send(error("bad_field", "text must be a string."))
                elif not text.strip():
                    await conn.send(error("empty_text", "Message is empty."))
                elif len(text) > MAX_TEXT:
                    await conn.send(error("text_too_long", f"Message is longer than {MAX_TEXT} characters."))
                else:
                    room.last_id += 1
                    out = frame(
                        "msg", {"user": user, "text": text, "ts": time.time(), "id": room.last_id, "room": room.name}
                    )
                    room.history.append(out)
                    broadcast(room.members, out)
            elif typ == "join":
                name, rname = p.get("user"), p.get("room", "lobby")
                if not isinstance(name, str) or not isinstance(rname, str):
                    await conn.send(error("bad_field", "user and room must be strings."))
                    continue
                name = name.strip()
                if not 1 <= len(name) <= 32 or not name.isprintable():
                    await conn.send(error("bad_name", "Bad name."))
                    continue
                if not ROOM_RE.match(rname):
                    await conn.send(error("bad_room", "Bad room name."))
                    continue
                target = rooms.get(rname) or rooms.setdefault(rname, Room(rname))
                i = bisect.bisect_left(target.names, name)
                if i < len(target.names) and target.names[i] == name and target.members.get(conn) != name:
                    await conn.send(error("name_taken", "That name is in use in this room."))
                    continue
                leave(conn, room)
                room, user = target, name
                for h in list(room.history):
                    await conn.send(h)
                room.members[conn] = user
                bisect.insort(room.names, user)
                await conn.send(
                    frame(
                        "welcome",
                        {
                            "user": user,
                            "room": room.name,
                            "ts": time.time(),
                            "users": room.names[:USERS_SHOWN],
                            "online": len(room.members),
                            "last_id": room.last_id,
                            "gap": None,
                            "token": "",
                        },
                    )
                )
                room.notice("join", user, conn)
            elif typ == "ping":
                await conn.send(dumps({"type": "pong", "ts": time.time()}).decode())
            else:
                await conn.send(error("unknown_type", f"Unknown type {typ!r}."))
    except ConnectionClosed:
        pass
    finally:
        leave(conn, room)


async def outbox_guard(limit: int) -> None:
    """Close (1013) connections whose unsent bytes pass `limit`: memory stays bounded."""
    while True:
        await asyncio.sleep(0.5)
        for room in list(rooms.values()):
            for conn in list(room.members):
                tr = conn.transport
                if tr is not None and tr.get_write_buffer_size() > limit:
                    leave(conn, room)
                    asyncio.get_running_loop().create_task(conn.close(1013, "outbox overflow"))


async def main(a: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(a.max_seconds, os._exit, 3)
    async with serve(
        handler,
        a.host,
        a.port,
        max_size=65536,
        backlog=2048,
        close_timeout=2,
        compression=None if a.no_deflate else "deflate",
    ):
        guard = loop.create_task(outbox_guard(a.outbox_bytes))
        try:
            await asyncio.Future()
        finally:
            guard.cancel()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="websockets reference chat server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument("--outbox-bytes", type=int, default=256 * 1024)
    ap.add_argument("--no-deflate", action="store_true", help="refuse permessage-deflate")
    ap.add_argument("--max-seconds", type=float, default=1800.0)
    args = ap.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
