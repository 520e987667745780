"""What puts a Gradio app and the chat on one server: the one module of chat_core
that knows Gradio (the core, the hub and the web adapter do not).

- :class:`ChatRoutes` stands in front of Gradio's app and hands the chat's routes
  to the chat (outside Gradio's CORS layer), with the DNS-rebinding guard for all;
- :func:`gradio_login` reads Gradio's login session (``--auth``), the Gradio
  internals this project relies on, in one place;
- :func:`chat_uvicorn` makes the server ``Blocks.launch`` starts the chat's;
- :func:`launch` (``python gradio_app.py``) and :func:`mount` (``uvicorn
  gradio_app:app``) serve the same thing: both go through :func:`server_options`.
  ``launch`` is kept because it is Gradio's public way to get a share link.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import secrets
import signal
import stat
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Optional

import gradio as gr
import uvicorn
from fastapi import FastAPI
from starlette.requests import HTTPConnection
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .admission import Login
from .bot import Bot
from .engine import check_engine
from .names import name_key
from .protocol import CloseCode
from .serve import tune_gc, uvicorn_options
from .settings import SettingError, Settings, add_arguments
from .store import StoreInUse, StoreUnusable, check_store
from .web import ChatServer, bad_host, create_app, is_chat_socket

ASSETS = Path(__file__).resolve().parent.parent / "assets"


class ChatRoutes:
    """ASGI app in front of Gradio's: requests that a route of the chat app answers
    (/ws, /api/..., /healthz, /chat, /openapi.json, /docs) go to the chat app;
    everything else goes on to Gradio. It stands outside Gradio's middleware (its
    CORS layer would allow any origin to read the chat's API with the user's
    cookie), and it refuses, for Gradio's routes too, a Host this server does not
    serve (the DNS-rebinding guard, chat_core.admission.host_allowed).

    ``gradio`` is Gradio's own app, whose session table the login check reads.
    Gradio serves its own build under /assets too, so a static mount of the chat
    app claims only the files it has.
    """

    def __init__(self, app: ASGIApp, chat: FastAPI, gradio: Any = None) -> None:
        self.app = app
        self.chat = chat
        self.gradio = gradio if gradio is not None else app

    @property
    def router(self) -> Any:
        """The wrapped app's router, whose ``lifespan_context`` starts the chat: for an app
        that mounts this one (a Mount passes no lifespan events on)."""
        return self.app.router  # type: ignore[attr-defined]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        server = self.chat.state.chat
        if is_chat_socket(scope):  # straight in: one layer less held by every open socket
            scope["gradio_app"] = self.gradio  # (in place: a copy would live as long as the socket)
            await server.serve_websocket(scope, receive, send)
        elif scope["type"] == "http" and not server.gate.http_allowed(scope):
            await bad_host(scope, receive, send)
        elif self.claims(scope):
            scope["gradio_app"] = self.gradio
            await self.chat(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def claims(self, scope: Scope) -> bool:
        for route in self.chat.router.routes:
            match, child = route.matches(scope)
            if match is Match.NONE:
                continue
            static = getattr(route, "app", None)
            if isinstance(static, StaticFiles):
                try:
                    _, found = static.lookup_path(static.get_path({**scope, **child}))
                except (OSError, ValueError):
                    found = None
                if found is None or not stat.S_ISREG(found.st_mode):
                    continue
            return True
        return False


def gradio_login(conn: HTTPConnection) -> Optional[Login]:
    """The user logged in through Gradio's login page (``--auth``), from its session
    cookie (Gradio 6.31: ``access-token-<cookie_id>`` or ``access-token-unsecure-<cookie_id>``,
    looked up in ``App.tokens``); the cookie's value identifies the session."""
    gradio = conn.scope.get("gradio_app")
    if gradio is None:
        return None
    token = (conn.cookies.get(f"access-token-{gradio.cookie_id}")
             or conn.cookies.get(f"access-token-unsecure-{gradio.cookie_id}"))
    user = gradio.tokens.get(token) if token else None
    return Login(user, token) if user and token else None


_running: list[ChatServer] = []  # the chat server of this process's app, once made (see chat_server)


def chat_app(settings: Settings, assets: Path = ASSETS) -> FastAPI:
    """The chat server from chat_core; with --auth, it trusts Gradio's login."""
    app = create_app(settings, assets_dir=assets, authenticate=gradio_login if settings.auth else None)
    _running[:] = [app.state.chat]
    return app


def chat_server() -> ChatServer:
    """The chat server this process serves, for the dashboard's event handlers (they run
    on the server's own event loop, so they may await the hub and the store directly)."""
    if not _running:
        raise RuntimeError("the chat server is not made yet (gradio_support.launch or mount makes it)")
    return _running[0]


def server_options(chat: FastAPI) -> dict[str, Any]:
    """Keyword arguments for `demo.launch` and `gr.mount_gradio_app` alike."""
    settings: Settings = chat.state.chat.settings

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async with chat.router.lifespan_context(chat):
            yield

    return {
        "app_kwargs": {"lifespan": lifespan},
        # Gradio's login page in front of the UI; /ws and the API check the same session.
        "auth": list(settings.logins().items()) or None,
        # Gradio's SSR puts a Node proxy in front that forwards only Gradio's own
        # routes and no WebSocket upgrades, so /ws would not reach the chat: render
        # in the browser, whatever GRADIO_SSR_MODE says (Spaces set it to true).
        "ssr_mode": False,
        # the chat's HTTP API is described at /docs; Gradio's "Use via API" page would list nothing
        "footer_links": ["gradio", "settings"],
    }


@contextmanager
def chat_uvicorn(chat: FastAPI) -> Iterator[None]:
    """While ``demo.launch`` runs, make the uvicorn server it starts the chat's.

    Gradio 6.31's ``gradio.http_server.start_server`` builds
    ``uvicorn.Config(app=..., port=..., host=..., log_level=..., ssl_...)`` and starts
    it at once, with no way to pass other options. Through this, that config gets
    :class:`ChatRoutes` in front of Gradio's app, and the chat's HTTP and WebSocket
    protocols and options (chat_core.serve.uvicorn_options) from the first connection:
    no X-Forwarded-For believed from loopback peers, a header timeout, frames written
    once per broadcast. tests/test_gradio_app.py fails if Gradio stops calling it so.
    """
    real = uvicorn.Config
    settings: Settings = chat.state.chat.settings

    def config(app: Any, **kwargs: Any) -> uvicorn.Config:
        return real(ChatRoutes(app, chat), **{**kwargs, **uvicorn_options(settings)})

    uvicorn.Config = config  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        uvicorn.Config = real  # type: ignore[misc]


def settings_from(args: Optional[argparse.Namespace] = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Chat settings: flags over CHAT_* variables over the Space's defaults over the
    defaults (chat_core.settings.space_defaults)."""
    return Settings.from_env(environ) if args is None else Settings.from_args(args, environ)


def checked_settings(args: Optional[argparse.Namespace] = None) -> Settings:
    """:func:`settings_from`, with a store that can be opened; else exit with one line."""
    try:
        settings = settings_from(args)
        if not settings.redis_url:
            check_store(settings.db)
        return settings
    except (SettingError, StoreUnusable) as exc:
        sys.exit(f"error: {exc}")


def mount(demo: gr.Blocks, settings: Optional[Settings] = None) -> ChatRoutes:
    """The ASGI app for `uvicorn gradio_app:app`: ``demo`` and the chat on one app
    (settings from CHAT_* variables)."""
    chat = chat_app(settings or checked_settings())
    tune_gc()  # this is what uvicorn runs: the process is a chat server
    shell = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    gr.mount_gradio_app(shell, demo, path="/", **server_options(chat))
    mounted = next(route.app for route in shell.routes if isinstance(route, Mount))  # Gradio's own app
    return ChatRoutes(shell, chat, gradio=mounted)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Realtime chat: the Gradio UI, /ws, the HTTP API and /chat on one port.",
    )
    parser.add_argument("--host", default=None,
                        help="Address to bind. Default: GRADIO_SERVER_NAME, else 0.0.0.0 on a Space, else 127.0.0.1.")
    parser.add_argument("--port", type=int, default=None,
                        help="Port. Default: GRADIO_SERVER_PORT, else 7860 (or the next free one).")
    parser.add_argument("--share", action="store_true",
                        help="Also ask Gradio for a public share link to this port (not on Spaces).")
    parser.add_argument("--inbrowser", action="store_true", help="Open the app in the default browser.")
    parser.add_argument("--bot", action="append", default=[], metavar="MODULE:NAME",
                        help="Run a chat_core.bot.Bot inside the app, e.g. bots.dice:bot (repeatable); it joins "
                             "over the app's own /ws, with the same checks and limits as any client.")
    parser.add_argument("--bot-room", default="lobby", help="The room --bot bots join (default lobby).")
    add_arguments(parser)
    return parser.parse_args(argv)


def bind_host(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """--host, else GRADIO_SERVER_NAME, else 0.0.0.0 on a Space; None lets Gradio use 127.0.0.1."""
    return args.host or environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if environ.get("SPACE_ID") else None)


def launch(demo: gr.Blocks, argv: Optional[list[str]] = None) -> None:
    """`python gradio_app.py`: ``demo`` and the chat through Gradio's own ``launch``
    (which makes share links), until Ctrl+C or SIGTERM."""
    args = parse_args(argv)
    settings = checked_settings(args)
    bots = [load_bot(spec) for spec in args.bot]  # before anything starts: a typo stops here
    try:
        settings = with_bot_keys(settings, bots)
    except SettingError as exc:
        sys.exit(f"error: --bot: {exc}")
    try:
        check_engine(settings)  # before Gradio starts: a second server on the same file would reuse ids
    except StoreInUse as exc:
        sys.exit(f"error: {exc}")
    chat = chat_app(settings)
    tune_gc()

    def stop(signum: int, frame: Any) -> None:
        # Clients first get 1001 (going away) with all history written, then Gradio
        # closes the server. Spaces and process managers stop with SIGTERM.
        chat.state.chat.close_connections_from_thread(CloseCode.GOING_AWAY)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with chat_uvicorn(chat):
            demo.launch(
                server_name=bind_host(args),
                server_port=args.port,  # None: GRADIO_SERVER_PORT, else 7860 and up
                share=True if args.share else None,  # None: GRADIO_SHARE decides, as in any Gradio app
                inbrowser=args.inbrowser,
                prevent_thread_lock=True,
                **server_options(chat),
            )
        if demo.share_url:
            chat.state.chat.gate.allow_share_link(demo.share_url)
        for bot in bots:
            start_bot(bot, demo.local_url or f"http://127.0.0.1:{demo.server_port}", args.bot_room)
        demo.block_thread()  # until Ctrl+C or SIGTERM; it closes the server then
    except KeyboardInterrupt:  # stopped while still starting up
        demo.close()


def load_bot(spec: str) -> Bot:
    """``module:name`` as the :class:`chat_core.bot.Bot` it names; else exit with one line."""
    module, _, name = spec.partition(":")
    try:
        bot = getattr(importlib.import_module(module), name or "bot")
    except (ImportError, AttributeError, ValueError) as exc:
        sys.exit(f"error: --bot {spec!r}: {exc}")
    if not isinstance(bot, Bot):
        sys.exit(f"error: --bot {spec!r} is a {type(bot).__name__}, not a chat_core.bot.Bot")
    return bot


def with_bot_keys(settings: Settings, bots: list[Bot]) -> Settings:
    """The settings with a key for each bot run inside the app: the key --bot-keys gives its
    name, else a new random one. So the app's bots are marked as bots and their names are
    theirs alone, with nothing to configure."""
    if not bots:
        return settings
    keys = settings.bot_key_map()
    entries = [f"{name}={key}" for name, key in keys.values()]
    for bot in bots:
        kept = keys.get(name_key(bot.name))
        if kept is None:
            bot.key = bot.key or secrets.token_urlsafe(24)
            entries.append(f"{bot.name}={bot.key}")
        else:
            bot.key = kept[1]
    return dataclasses.replace(settings, bot_keys=",".join(entries)).validated()


def start_bot(bot: Bot, url: str, room: str) -> threading.Thread:
    """Run ``bot`` beside the app, in a thread of its own: it reaches the chat as any client
    does, through /ws on loopback (so every check and limit applies to it)."""
    url = url.replace("0.0.0.0", "127.0.0.1")
    thread = threading.Thread(target=bot.run, args=(url, room), name=f"bot-{bot.name}", daemon=True)
    thread.start()
    return thread
