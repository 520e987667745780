"""The FastAPI adapter: ``/ws``, the HTTP API and the plain ``/chat`` page.

Deliberately thin: the WebSocket route turns socket events into parsed frames
and hands them to the hub; all chat logic lives in :mod:`chat_core.hub`.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Optional

from fastapi import APIRouter, FastAPI, HTTPException, Query, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from . import protocol
from .hub import Hub, Member
from .outbox import Outbox
from .protocol import Join, Msg, Ping, ProtocolError
from .settings import Settings
from .store import open_store

log = logging.getLogger("chat_core.web")


class ChatServer:
    """The hub plus the routes that reach it; start/stop it with :meth:`lifespan`."""

    def __init__(self, settings: Optional[Settings] = None) -> None:
        self.settings = settings or Settings.from_env()
        self.hub: Optional[Hub] = None

    async def start(self) -> None:
        s = self.settings
        self.hub = Hub(s, open_store(s.db, keep=s.history_keep))
        await self.hub.start()
        log.info("chat history in %s", s.db)

    async def stop(self) -> None:
        if self.hub is not None:
            await self.hub.stop()
            self.hub = None

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def _hub(self) -> Hub:
        if self.hub is None:
            raise HTTPException(503, "chat server is not running")
        return self.hub

    # --- WebSocket ---------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        hub = self._hub()
        s = self.settings
        await websocket.accept()

        async def close(code: int, reason: str) -> None:
            await websocket.close(code, reason)

        route = asyncio.current_task()
        abandoned = False

        def abandon() -> None:  # the peer stopped reading for good: stop waiting on it
            nonlocal abandoned
            abandoned = True
            if route is not None:
                route.cancel()

        outbox = Outbox(websocket.send_text, close, s.outbox, abandon)
        member = hub.attach(outbox, websocket.client.host if websocket.client else "")
        outbox.start()
        try:
            while not outbox.closed:
                event = await websocket.receive()
                if event["type"] == "websocket.disconnect":
                    break
                text = event.get("text")
                if text is None:
                    member.send(protocol.error("binary_not_supported", "Send text frames holding JSON; binary frames are not read."))
                    continue
                if s.max_frame and len(text) > s.max_frame // 4 and len(text.encode()) > s.max_frame:
                    outbox.close(1009, "frame too big")
                    break
                await self.handle(member, text)
        except asyncio.CancelledError:
            if not abandoned:
                raise
        finally:
            hub.detach(member)
            if not outbox.closed:
                outbox.close(0)  # the peer is gone: nothing more to send, no close frame
            if outbox.task is not None and outbox.task is not asyncio.current_task():
                await asyncio.wait([outbox.task])

    async def handle(self, member: Member, text: str) -> None:
        """One text frame from a client: parse, validate, hand over; errors go back as frames."""
        hub = self._hub()
        try:
            frame = protocol.parse(text, self.settings.max_text)
            if isinstance(frame, Msg):
                hub.post(member, frame.text)
            elif isinstance(frame, Join):
                await hub.join(member, frame)
            elif isinstance(frame, Ping):
                member.send(protocol.pong())
        except ProtocolError as exc:
            member.send(protocol.error(exc.code, exc.message))

    # --- HTTP --------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_websocket_route("/ws", self.websocket)

        @router.get("/api/rooms", tags=["chat"], summary="Rooms with their online counts")
        async def rooms() -> dict[str, Any]:
            return {"rooms": self._hub().rooms_summary()}

        @router.get("/api/rooms/{room}/messages", tags=["chat"], summary="A room's history, oldest first")
        async def messages(
            room: str,
            since: int = Query(0, ge=0, description="Only messages with an id greater than this"),
            limit: int = Query(100, ge=1, le=10000, description="At most this many (the newest)"),
        ) -> dict[str, Any]:
            try:
                protocol.check_room(room)
            except ProtocolError as exc:
                raise HTTPException(422, exc.message) from None
            hub = self._hub()
            limit = min(limit, self.settings.replay_limit or limit)
            found = await hub.store.after(room, since, limit)
            return {"room": room, "messages": [m.payload() for m in found]}

        @router.get("/healthz", tags=["chat"], summary="Liveness and counts")
        async def healthz() -> dict[str, Any]:
            return {"status": "ok", **self._hub().stats()}

        return router


def create_app(settings: Optional[Settings] = None, assets_dir: Optional[Path] = None) -> FastAPI:
    """A FastAPI app serving the chat; with ``assets_dir``, also ``/chat`` and ``/assets``."""
    server = ChatServer(settings)
    app = FastAPI(title="Realtime chat", lifespan=server.lifespan)
    app.state.chat = server
    app.include_router(server.router())
    if assets_dir is not None:
        page = Path(assets_dir) / "page.html"

        @app.get("/chat", include_in_schema=False)
        async def chat_page() -> FileResponse:
            return FileResponse(page, media_type="text/html")

        app.mount("/assets", StaticFiles(directory=assets_dir), name="assets")
    return app
