"""A small test client speaking the chat protocol over a real WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional

from websockets.asyncio.client import ClientConnection, connect


class Client:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> Client:
        return cls(await connect(url, open_timeout=10, **kwargs))

    async def send(self, frame: Any) -> None:
        await self.conn.send(frame if isinstance(frame, (str, bytes)) else json.dumps(frame))

    async def recv(self, timeout: float = 5.0) -> dict:
        return json.loads(await asyncio.wait_for(self.conn.recv(), timeout))

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict:
        """Skip frames until one of ``kind`` arrives."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame

    async def recv_notice(self, kind: str, user: str, timeout: float = 5.0) -> dict:
        """Skip frames until a ``join``/``leave`` notice about ``user``."""
        while True:
            frame = await self.recv_type(kind, timeout)
            if frame["payload"]["user"] == user:
                return frame

    async def join(
        self, user: str, room: Optional[str] = None, since: Optional[int] = None, **extra: Any
    ) -> tuple[list[dict], dict]:
        """Send join; return (history msg frames, welcome)."""
        payload: dict[str, Any] = {"user": user, **extra}
        if room is not None:
            payload["room"] = room
        if since is not None:
            payload["since"] = since
        await self.send({"type": "join", "payload": payload})
        history = []
        while True:
            frame = await self.recv()
            if frame["type"] == "welcome":
                return history, frame
            if frame["type"] == "error":
                raise AssertionError(f"join refused: {frame}")
            history.append(frame)

    async def say(self, text: str) -> None:
        await self.send({"type": "msg", "payload": {"text": text}})

    async def drain(self) -> None:
        """Read and drop frames until the connection closes (run it as a task)."""
        async for _ in self.conn:
            pass

    async def close(self) -> None:
        await self.conn.close()

    async def nothing_within(self, seconds: float) -> bool:
        try:
            frame = await asyncio.wait_for(self.conn.recv(), seconds)
        except asyncio.TimeoutError:
            return True
        raise AssertionError(f"unexpected frame {frame}")


async def fragmented_close_code(url: str, size: int = 100_000, piece: int = 30_000) -> Optional[int]:
    """Send one message of ``size`` characters in fragments of ``piece``; the close code the server sends."""
    from websockets.exceptions import ConnectionClosed

    async with connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "join", "payload": {"user": "frag"}}))
        text = json.dumps({"type": "msg", "payload": {"text": "x" * size}})
        try:
            await ws.send(text[i : i + piece] for i in range(0, len(text), piece))
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
