"""The chat app: the chat widget in a Gradio page, on the same port as the chat server.

    python gradio_app.py                    # http://127.0.0.1:7860
    python gradio_app.py --share            # and a public share link to the same port
    uvicorn gradio_app:app --port 7860 --ws chat_core.transport:ChatWebSocketProtocol
                                            # the same app, served by uvicorn

One port serves the Gradio UI at /, the chat WebSocket at /ws, the HTTP API
(/api/rooms, /healthz, /openapi.json, /docs) and the plain page /chat.

How it is put together: Gradio builds the FastAPI app (`Blocks.launch` or
`gr.mount_gradio_app`), and `app_kwargs` gives that app the chat server's
lifespan plus a middleware that hands every request a chat route answers to
the chat app from `chat_core`. Both commands above go through that one
function, `server_options`, so they serve the same thing; `launch` is kept for
`python gradio_app.py` because it is Gradio's public way to get a share link.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import stat
import sys
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Mapping, Optional

import gradio as gr
import uvicorn
from fastapi import FastAPI
from starlette.requests import HTTPConnection
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from chat_core.admission import Login
from chat_core.serve import uvicorn_options
from chat_core.settings import SettingError, Settings, add_arguments
from chat_core.store import StoreInUse, StoreUnusable, check_free, check_store
from chat_core.web import bad_host, create_app, is_chat_socket

ASSETS = Path(__file__).resolve().parent / "assets"
SPACE_DATA = Path("/data")  # a Space's persistent storage, when it has some

# --- the widget: the markup of assets/page.html, with chat.js and chat.css ---

PAGE = (ASSETS / "page.html").read_text(encoding="utf-8")
WIDGET_HTML = PAGE[PAGE.index("<section", PAGE.index("<!-- chat-widget:start")):PAGE.index("<!-- chat-widget:end")]


def asset_url(name: str) -> str:
    """A relative URL (so it works under a path prefix) that changes when the file does."""
    digest = hashlib.sha256((ASSETS / name).read_bytes()).hexdigest()[:12]
    return f"assets/{name}?v={digest}"


# gr.HTML does not run <script> tags in its content: `head` loads chat.js, then
# Gradio runs `js_on_load` with `element` bound to the component.
WIDGET_HEAD = (
    f'<link rel="stylesheet" href="{asset_url("chat.css")}">'
    f'<script src="{asset_url("chat.js")}"></script>'
)
WIDGET_JS = """
if (window.ChatWidget) {
  window.ChatWidget.mount(element);
} else {
  const status = element.querySelector('[data-testid="chat-status"]');
  if (status) status.textContent = "The chat script (assets/chat.js) did not load; reload the page.";
}
"""

with gr.Blocks(title="Realtime chat") as demo:
    gr.Markdown(
        "## Realtime chat\n"
        "Pick a name, join a room and talk. Open a second tab to see messages arrive. "
        "The same chat without Gradio is at [chat](chat); the HTTP API is described at [docs](docs)."
    )
    gr.HTML(
        WIDGET_HTML,
        head=WIDGET_HEAD,
        js_on_load=WIDGET_JS,
        apply_default_css=False,
        elem_id="chat-widget",
    )


# --- the server: Gradio's FastAPI app, with the chat app in front of it ------


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
        elif scope["type"] == "http" and not server.http_allowed(scope):
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


def chat_app(settings: Settings) -> FastAPI:
    """The chat server from chat_core; with --auth, it trusts Gradio's login."""
    return create_app(settings, assets_dir=ASSETS, authenticate=gradio_login if settings.auth else None)


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


def space_db(environ: Mapping[str, str] = os.environ, data_dir: Optional[Path] = None) -> Optional[str]:
    """On a Hugging Face Space with persistent storage, keep the history in /data."""
    data_dir = data_dir or SPACE_DATA
    if environ.get("SPACE_ID") and data_dir.is_dir() and os.access(data_dir, os.W_OK):
        return str(data_dir / "chat.db")
    return None


def settings_from(args: Optional[argparse.Namespace] = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Chat settings: flags over CHAT_* variables over defaults; /data/chat.db on a
    Space with storage. (With --share, the link's own origin is allowed once Gradio
    has made it: see ChatServer.allow_share_link.)"""
    db = None if environ.get("CHAT_DB") or (args is not None and args.db) else space_db(environ)
    if args is None:
        return Settings.from_env(environ, db=db)
    if db:
        args = argparse.Namespace(**{**vars(args), "db": db})
    return Settings.from_args(args, environ)


def checked_settings(args: Optional[argparse.Namespace] = None) -> Settings:
    """:func:`settings_from`, with a store that can be opened; else exit with one line."""
    try:
        settings = settings_from(args)
        check_store(settings.db)
        return settings
    except (SettingError, StoreUnusable) as exc:
        sys.exit(f"error: {exc}")


def build_app(settings: Optional[Settings] = None) -> ChatRoutes:
    """The ASGI app for `uvicorn gradio_app:app` (settings from CHAT_* variables)."""
    chat = chat_app(settings or checked_settings())
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
    add_arguments(parser)
    return parser.parse_args(argv)


def bind_host(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """--host, else GRADIO_SERVER_NAME, else 0.0.0.0 on a Space; None lets Gradio use 127.0.0.1."""
    return args.host or environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if environ.get("SPACE_ID") else None)


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    settings = checked_settings(args)
    try:
        check_free(settings.db)  # before Gradio starts: a second server on the same file would reuse ids
    except StoreInUse as exc:
        sys.exit(f"error: {exc}")
    chat = chat_app(settings)

    def stop(signum: int, frame: Any) -> None:
        # Clients first get 1001 (going away) with all history written, then Gradio
        # closes the server. Spaces and process managers stop with SIGTERM.
        chat.state.chat.close_connections_from_thread(1001)
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
            chat.state.chat.allow_share_link(demo.share_url)
        demo.block_thread()  # until Ctrl+C or SIGTERM; it closes the server then
    except KeyboardInterrupt:  # stopped while still starting up
        demo.close()


if __name__ == "__main__":
    main()
else:
    app = build_app()
