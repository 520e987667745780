"""The FastAPI adapter: ``/ws``, the HTTP API and the plain ``/chat`` page.

Deliberately thin: the WebSocket route admits or refuses the handshake, applies
per-connection limits, turns socket events into parsed frames and hands them to
the hub; all chat logic lives in :mod:`chat_core.hub`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Optional, Union

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from . import logs, protocol
from .activity import Activity
from .admin_api import admin_router
from .admission import Authenticator, Gate, address_of, allowed_list, basic_auth
from .engine import Engine, open_engine
from .history_access import HistoryAccess
from .history_api import history_router
from .hub import Health, Hub
from .identity import Claims
from .moderators import Moderators
from .outbox import FRAME_WRITER, FrameWriter, open_outbox
from .protocol import CloseCode, ProtocolError
from .session import AddressLimits, FrameHandler, Session
from .settings import Settings

log = logging.getLogger("chat_core.web")



class ChatServer:
    """The hub plus the routes that reach it; start/stop it with :meth:`lifespan`.

    ``authenticate`` maps a request to the logged-in user (None: not logged in);
    when given, every route refuses anyone not logged in and chat names are login names.
    """

    def __init__(self, settings: Optional[Settings] = None, authenticate: Optional[Authenticator] = None,
                 challenge: bool = False) -> None:
        self.settings = settings or Settings.from_env()
        self.authenticate = authenticate
        self.challenge = challenge  # answer 401 with an HTTP Basic challenge (the browser's own login box)
        self.hub: Optional[Hub] = None
        self.engine: Optional[Engine] = None
        self.activity: Optional[Activity] = None
        self.history: Optional[HistoryAccess] = None
        self.frames: Optional[FrameHandler] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.limits = AddressLimits(self.settings)
        self.gate = Gate(self.settings, authenticate)
        self.moderators = Moderators(self.settings)
        self.reads_failing = False  # the last history read failed (its outage is logged once)

    async def start(self) -> None:
        if self.hub is not None:
            return
        s = self.settings
        engine = open_engine(s)
        self.engine = engine
        self.gate.secret = await engine.secret(s.secret)
        claims = Claims(engine.store, self.gate.secret, s.token_ttl, s.name_reserve,
                        logins=self.authenticate is not None)
        self.hub = Hub(s, engine.store, claims, engine.sequencer, engine.presence, engine.moderation)
        if engine.limits is not None:
            self.limits = engine.limits(s)
        await self.hub.start()
        self.activity = Activity(self.hub)  # who is online, sampled (chat_core.activity)
        self.activity.start()
        self.history = HistoryAccess(self.hub.store, self.hub.moderation)  # search and export
        self.frames = FrameHandler(self.hub, s, self.limits)
        self.loop = asyncio.get_running_loop()
        log.info("chat history in %s (%s engine)", engine.where, engine.kind.value)

    async def close_connections(self, code: int = CloseCode.GOING_AWAY) -> None:
        """Close every chat connection (history written first); the server keeps running."""
        if self.hub is not None:
            await self.hub.close_all(code)

    def close_connections_from_thread(self, code: int = CloseCode.GOING_AWAY, timeout: float = 4.0) -> None:
        """:meth:`close_connections` from another thread (a signal handler while the
        server runs in its own thread, as under Gradio's ``launch``)."""
        if self.loop is None or self.loop.is_closed() or self.hub is None:
            return
        future = asyncio.run_coroutine_threadsafe(self.close_connections(code), self.loop)
        try:
            future.result(timeout)
        except Exception:
            log.warning("could not close chat connections within %.1fs", timeout)

    async def stop(self) -> None:
        if self.activity is not None:
            await self.activity.stop()
            self.activity = None
        self.history = None
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

    def address(self, conn: HTTPConnection) -> str:
        """The client address the chat's limits and bans count (behind a share link or a proxy too)."""
        return address_of(conn, self.settings, self.gate.share_host)

    @property
    def store_errors(self) -> tuple[type[BaseException], ...]:
        """What a read of the history raises while the store is away (Redis down)."""
        return self.hub.writer.sequencer.expected if self.hub is not None else ()

    @contextmanager
    def history_read(self) -> Iterator[None]:
        """Around an HTTP route's read of the history: the store away is a 503, to try again later.
        The first failed read of an outage is logged with its cause; the next read that works says so."""
        try:
            yield
        except self.store_errors as exc:
            if not self.reads_failing:
                log.warning("chat history: a read failed (%s: %s); answering 503", type(exc).__name__, exc)
            self.reads_failing = True
            raise HTTPException(503, "the chat history cannot be read right now") from None
        if self.reads_failing:
            self.reads_failing = False
            log.warning("chat history: reads work again")

    # --- WebSocket ---------------------------------------------------------

    async def serve_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/ws`` as a plain ASGI app (see :class:`ChatAPI`): admit or refuse the
        handshake, then hand the socket's frames to the hub until it closes. One
        coroutine for the connection's life: every nested one would be kept per socket."""
        hub = self._hub()
        frames = self.frames
        assert frames is not None  # started with the hub
        s = self.settings
        if (await receive())["type"] != "websocket.connect":  # ASGI: the handshake's first event
            return
        handshake = HTTPConnection(scope)
        login, refusal = self.gate.admit(handshake)
        if refusal is not None:
            log.info("refused a WebSocket from %s: %s", handshake.client, refusal)
            await refuse(scope, send, 403, refusal)
            return
        address = self.address(handshake)
        del handshake
        if not await self.limits.connect(address):
            await refuse(scope, send, 429, "too many new connections from this address; wait a moment")
            return
        # Nothing reads the handshake's headers from here on, and a browser's are a few
        # KB: let them go rather than keep them for the whole life of the connection.
        if isinstance(scope.get("headers"), list):
            scope["headers"].clear()
        await send({"type": "websocket.accept"})
        conn = f"{id(scope):x}"  # this connection, for the count of open ones per address
        if not await self.limits.acquire(address, conn):
            await send({"type": "websocket.send", "text": protocol.error(
                "too_many_connections", f"This address already has {s.max_conn_per_ip} open connections.")})
            await send({"type": "websocket.close", "code": CloseCode.POLICY, "reason": "too many connections"})
            return
        writer: Optional[FrameWriter] = scope.get("extensions", {}).get(FRAME_WRITER)
        if writer is not None and s.send_buffer:
            writer.set_send_buffer(s.send_buffer)
        route = asyncio.current_task()

        def abandon() -> None:  # the peer stopped reading for good: not even the close frame went out
            if writer is not None:
                writer.abort()  # else uvicorn's close would wait for it to read, holding the socket
            if route is not None:
                route.cancel()

        outbox = open_outbox(send, s.outbox, writer, s.stall_timeout, abandon)
        session = Session(hub.attach(outbox), s, login, address)
        outbox.start()
        try:
            while not outbox.closed:
                event = await receive()
                if event["type"] != "websocket.receive":
                    break  # websocket.disconnect: the peer is gone
                text = event.get("text")
                if text is None:
                    session.member.send(protocol.error(
                        "binary_not_supported", "Send text frames holding JSON; binary frames are not read."))
                    continue
                if s.max_frame and len(text) > s.max_frame // 4 and len(text.encode()) > s.max_frame:
                    outbox.close(CloseCode.TOO_BIG, "frame too big")
                    break
                await frames.handle(session, text)
        except asyncio.CancelledError:
            if not outbox.abandoned:
                raise
        finally:
            outbox.on_abandon = None  # from here the route only waits for the outbox, which is ending
            hub.detach(session.member)
            self.limits.release(address, conn)
            if not outbox.closed:
                outbox.close(0)  # the peer is gone: nothing more to send, no close frame
            if outbox.task is not None and outbox.task is not asyncio.current_task():
                await asyncio.wait([outbox.task])

    async def websocket(self, websocket: WebSocket) -> None:
        """The router's ``/ws`` route, for apps that mount these routes without :class:`ChatAPI`."""
        await self.serve_websocket(websocket.scope, websocket.receive, websocket.send)

    async def handle(self, session: Session, text: str) -> None:
        """One text frame from a client (see :class:`chat_core.session.FrameHandler`)."""
        if self.frames is None:
            raise HTTPException(503, "chat server is not running")
        await self.frames.handle(session, text)

    # --- HTTP --------------------------------------------------------------

    def _require_login(self, request: Request) -> None:
        if self.authenticate is not None and self.authenticate(request) is None:
            headers = {"WWW-Authenticate": 'Basic realm="chat"'} if self.challenge else None
            raise HTTPException(401, "Log in first.", headers=headers)

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_websocket_route(WS_PATH, self.websocket)
        guarded = [Depends(self._require_login)]

        @router.get("/api/rooms", tags=["chat"], summary="Rooms with their online counts", dependencies=guarded)
        async def rooms() -> dict[str, Any]:
            return {"rooms": await self._hub().rooms_summary()}

        @router.get("/api/rooms/{room}/messages", tags=["chat"], summary="A room's history, oldest first",
                    dependencies=guarded)
        async def messages(
            room: str,
            since: Optional[int] = Query(None, ge=0, le=2**63 - 1, description=(
                "Page forward: the first `limit` messages with an id greater than this. "
                "Without it: the newest `limit` messages.")),
            limit: int = Query(100, ge=1, le=1000, description="At most this many"),
        ) -> dict[str, Any]:
            try:
                protocol.check_room(room)
            except ProtocolError as exc:
                raise HTTPException(422, exc.message) from None
            with self.history_read():
                found = await self._hub().store.after(room, since or 0, limit, first=since is not None)
            return {"room": room, "messages": [m.payload() for m in found]}

        @router.get("/api/activity", tags=["chat"], dependencies=guarded,
                    summary="The last hour: messages per minute per room, people online over time, busiest rooms")
        async def activity() -> dict[str, Any]:
            if self.activity is None:
                raise HTTPException(503, "chat server is not running")
            with self.history_read():
                return (await self.activity.snapshot()).as_json()

        @router.get("/api/me", tags=["chat"], summary="The logged-in user (the chat name) and the page's /ws ticket")
        async def me(request: Request) -> dict[str, Optional[str]]:
            login = self.authenticate(request) if self.authenticate is not None else None
            if login is None:
                return {"user": None, "ticket": None}
            return {"user": login.user, "ticket": self.gate.ticket_for(login)}

        @router.get("/healthz", tags=["chat"], summary="Health (503 when degraded); counts for the logged in")
        async def healthz(request: Request) -> JSONResponse:
            hub = self._hub()
            degraded = hub.health is Health.DEGRADED
            body: dict[str, Any] = {"status": hub.health.value}
            if self.authenticate is None or self.authenticate(request) is not None:
                if degraded:
                    body["reason"] = hub.health_reason
                body.update(hub.stats())
                if self.engine is not None:
                    body.update(await self.engine.status())
            return JSONResponse(body, status_code=503 if degraded else 200)

        return router


WS_PATH = "/ws"


class ChatAPI(FastAPI):
    """FastAPI, with WebSocket connections to ``/ws`` handed straight to the chat.

    Passed through the middleware stack and the router, every open connection
    would keep two dozen suspended coroutines and three AsyncExitStacks alive for
    as long as it stays (about half of its memory, docs/benchmarks.md); a chat
    socket needs none of them. The route stays in the router for apps that mount
    this one's routes elsewhere.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_chat_socket(scope):
            scope["app"] = self
            await self.state.chat.serve_websocket(scope, receive, send)
        elif scope["type"] == "http" and not self.state.chat.gate.http_allowed(scope):
            await bad_host(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


async def bad_host(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer a request whose Host this server does not serve (see :func:`host_allowed`)."""
    await PlainTextResponse("Invalid Host header (see --allowed-hosts).", status_code=400)(scope, receive, send)


async def refuse(scope: Scope, send: Send, status: int, reason: str) -> None:
    """Refuse a WebSocket handshake with an HTTP ``status`` (403: not allowed, 429: too
    many), or plain 403 where the server cannot send a response of the app's own."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = reason.encode()
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": CloseCode.POLICY})  # before accept: HTTP 403


def cors_options(settings: Settings) -> dict[str, Any]:
    """CORS for the chat's HTTP API: only ``allowed_origins`` (a '*' label as a regular
    expression for exactly one label), never whatever Origin asks."""
    exact, patterns = [], []
    for origin in allowed_list(settings):
        if "*" in origin:
            patterns.append(re.escape(origin).replace(r"\*", "[A-Za-z0-9-]+"))
        else:
            exact.append(origin)
    return {"allow_origins": exact, "allow_origin_regex": "|".join(patterns) or None,
            "allow_credentials": True, "allow_methods": ["GET"]}


def is_chat_socket(scope: Scope) -> bool:
    """A WebSocket handshake for ``/ws``."""
    return scope["type"] == "websocket" and route_path(scope) == WS_PATH


def route_path(scope: Scope) -> str:
    """The request path below the app's ``root_path``, as Starlette's router sees it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] in ("", "/"):
        return path[len(root):]
    return path


def create_app(settings: Optional[Settings] = None, assets_dir: Optional[Path] = None,
               authenticate: Optional[Authenticator] = None) -> FastAPI:
    """A FastAPI app serving the chat; with ``assets_dir``, also ``/chat`` and ``/assets``.

    With ``settings.auth`` and no ``authenticate`` given, logins are checked as HTTP Basic.
    """
    logs.install()
    settings = settings or Settings.from_env()
    challenge = False
    if authenticate is None and settings.auth:
        authenticate, challenge = basic_auth(settings.logins()), True
    server = ChatServer(settings, authenticate, challenge)
    app = ChatAPI(title="Realtime chat", lifespan=server.lifespan)
    app.state.chat = server
    app.add_middleware(CORSMiddleware, **cors_options(settings))
    app.include_router(server.router())
    app.include_router(history_router(server))
    app.include_router(admin_router(server))
    if assets_dir is not None:
        page = Path(assets_dir) / "page.html"

        @app.get("/chat", include_in_schema=False, response_model=None)
        async def chat_page(request: Request) -> Union[FileResponse, RedirectResponse]:
            if server.authenticate is not None and server.authenticate(request) is None and not server.challenge:
                return RedirectResponse("./", status_code=303)  # to the login page in front of the UI
            server._require_login(request)
            return FileResponse(page, media_type="text/html")

        app.mount("/assets", StaticFiles(directory=assets_dir), name="assets")
    return app
