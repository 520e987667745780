"""Running an app that holds a :class:`~chat_core.web.ChatServer` under uvicorn,
with the chat settings applied to the WebSocket layer and a graceful stop.

On SIGINT/SIGTERM uvicorn would close WebSockets with 1012 itself; we first close
every chat connection with 1001 (going away) after writing pending history, so
clients know to reconnect and resume. The process exits within a few seconds.
"""

from __future__ import annotations

import gc
import logging
from typing import Any, Optional

import uvicorn

from .http_guard import GuardedHttpProtocol
from .protocol import CloseCode
from .settings import Settings
from .transport import websocket_protocol
from .web import ChatServer

log = logging.getLogger("chat_core.serve")

GRACE = 3  # seconds uvicorn waits for open requests after the chat connections are closed


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn settings for the chat: its HTTP and WebSocket layers, following its settings."""
    return {
        # a deadline for request headers and a cap on half-open connections per address (Slowloris)
        "http": GuardedHttpProtocol.configured(settings.header_timeout, settings.max_half_open_per_ip,
                                               settings.conn_rate),
        "ws": websocket_protocol(),  # frames written once per broadcast
        "ws_max_size": settings.max_frame or 16 * 1024 * 1024,
        "ws_ping_interval": settings.ping_interval or None,
        "ws_ping_timeout": settings.ping_timeout or None,
        "ws_per_message_deflate": False,  # per-recipient compression would undo encode-once fan-out
        "proxy_headers": False,  # client addresses are derived in chat_core.admission, per `trust_proxy`
        "timeout_graceful_shutdown": GRACE,
    }


def uvicorn_config(app: Any, host: str, port: int, settings: Settings, **extra: Any) -> uvicorn.Config:
    """A uvicorn config whose HTTP and WebSocket layers are the chat's and follow its settings."""
    return uvicorn.Config(app, host=host, port=port, **{**uvicorn_options(settings), **extra})


class ChatUvicorn(uvicorn.Server):
    """uvicorn.Server that closes chat connections with 1001 before its own shutdown."""

    def __init__(self, config: uvicorn.Config, chat: Optional[ChatServer]) -> None:
        super().__init__(config)
        self.chat = chat

    async def shutdown(self, sockets: Any = None) -> None:
        if self.chat is not None:
            try:
                await self.chat.close_connections(CloseCode.GOING_AWAY)
            except Exception:
                log.exception("closing chat connections failed")
        await super().shutdown(sockets)


def tune_gc() -> None:
    """Process-wide policy for a chat server process, applied by what runs the server
    (never by the library behind its caller's back). Thousands of long-lived connection
    objects make the default cyclic GC scan them over and over (pauses of over a second
    in a 10,000-client crowd, see docs/benchmarks.md): move what exists at startup out
    of its sight, and let the young generation grow before collecting."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def serve(app: Any, host: str, port: int, settings: Settings, **extra: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM. ``app.state.chat`` is the ChatServer, if any."""
    tune_gc()
    chat = getattr(getattr(app, "state", None), "chat", None)
    ChatUvicorn(uvicorn_config(app, host, port, settings, **extra), chat).run()
