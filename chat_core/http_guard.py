"""uvicorn's httptools HTTP protocol with a request-header deadline and a cap on
half-open connections per client address: a guard against Slowloris.

Why
---
uvicorn has no timeout for receiving a request's headers. A client that connects,
sends ``GET / HTTP/1.1\\r\\nHost: x\\r\\n`` and then one more header line every few
seconds (never the blank line that ends the headers) holds a socket, a file
descriptor and a protocol object forever; a few hundred such clients starve
``/healthz`` and ``/ws`` once the process runs out of descriptors. uvicorn's
``timeout_keep_alive`` does not help: it only runs between requests, and any
incoming byte cancels it, so a client sending bare CRLFs on an idle kept-alive
connection (which start no request, so no new timer) is not cut either.

:class:`GuardedHttpProtocol` adds, per connection:

* a **header deadline** (``header_timeout`` seconds): started when the connection
  is made, again when a request begins on a kept-alive connection, and when bytes
  that start no request arrive on an idle one; cancelled when the request's headers
  are complete. When it fires the connection is closed, after a minimal
  ``408 Request Timeout`` if the request had begun and no response is under way
  (a connection that never sent a byte is closed silently, as browsers' speculative
  pre-connections would be);
* a **cap on half-open connections per peer address** (``max_half_open_per_ip``):
  connections that have not completed their current request's headers are counted
  per real TCP peer (``transport.get_extra_info("peername")``, never a header: the
  headers are exactly what has not arrived yet). A new connection from an address
  already at the cap is closed at once, before uvicorn registers it, without a
  response. The count is released when headers complete, on the deadline, and when
  the connection is lost; an address whose count reaches zero leaves the dict.

It also publishes the real TCP peer address to the app as
``scope["extensions"]["chat_core.peer"]`` (a string, like the other chat_core
extension values; not a dict as the ASGI spec suggests), so the app can tell the
peer even when uvicorn's ``ProxyHeadersMiddleware`` has rewritten ``scope["client"]``.

Configure it with :meth:`GuardedHttpProtocol.configured` and pass the result as
``uvicorn.Config(http=...)``. Counted per worker process; behind a reverse proxy
every connection comes from the proxy's address, so size the cap for that (or turn
it off and keep the deadline).

Not covered: slow request *bodies* (the deadline ends with the headers), and the
TLS handshake (``connection_made`` only runs after it; asyncio's
``ssl_handshake_timeout`` bounds that).

uvicorn internals this relies on (read in uvicorn 0.54.0,
``uvicorn/protocols/http/httptools_impl.py`` and ``uvicorn/server.py``)
--------------------------------------------------------------------------------
* the server builds the protocol per connection as ``cls(config=, server_state=,
  app_state=, _loop=)`` (``Server.startup``'s ``create_protocol``);
* overridden: ``__init__``, ``connection_made``, ``connection_lost``,
  ``data_received``, and the httptools parser callbacks ``on_message_begin`` (where
  uvicorn creates ``self.scope`` for each request) and ``on_headers_complete``
  (where it starts the ASGI task, or returns early for a WebSocket upgrade);
* read: ``self.loop``, ``self.transport``, ``self.scope``, ``self.cycle`` and its
  ``response_complete``, ``self.pipeline``, ``self.timeout_keep_alive_task``,
  ``self.server_state.default_headers``;
* a WebSocket upgrade hands the transport to a new protocol with
  ``transport.set_protocol`` and this protocol's ``connection_lost`` is never
  called, so everything is released in ``on_headers_complete``, before the upgrade;
* ``connection_lost`` dereferences what ``connection_made`` set, so a refused
  connection (for which uvicorn's ``connection_made`` is skipped) skips it too.

When these change: a missing method fails at import (checked below); a renamed
attribute raises ``AttributeError`` on every connection; a callback no longer
called either leaves kept-alive requests without a deadline (``on_message_begin``)
or cuts every connection at the deadline (``on_headers_complete``). ``tests/test_slowloris.py`` pins each
behaviour; run it after every uvicorn upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, ClassVar, Optional, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .limits import KeyedBuckets

log = logging.getLogger("chat_core.http_guard")

PEER_EXTENSION = "chat_core.peer"  # scope["extensions"] key: the real TCP peer's address

# What this module overrides or calls on uvicorn's class: fail at import, not silently.
_OVERRIDDEN = ("connection_made", "connection_lost", "data_received", "on_message_begin", "on_headers_complete")
_missing = [name for name in _OVERRIDDEN if not callable(getattr(HttpToolsProtocol, name, None))]
if _missing:  # pragma: no cover - only on an incompatible uvicorn
    raise ImportError(f"uvicorn's HttpToolsProtocol has no {', '.join(_missing)}; chat_core.http_guard needs updating")

# Per-connection states (small ints: no extra objects per connection).
_IDLE = 0      # not waiting for headers: they are complete, or the kept-alive connection is idle
_WAITING = 1   # waiting for a request's headers, no byte of the request seen yet
_STARTED = 2   # a request has begun, its headers are not complete
_REFUSED = 3   # closed in connection_made: over the half-open cap; uvicorn never saw it

_TIMEOUT_STATUS = b"HTTP/1.1 408 Request Timeout\r\n"
_TIMEOUT_TAIL = b"content-length: 0\r\nconnection: close\r\n\r\n"


def _peer_ip(peername: object) -> Optional[str]:
    """The host part of a socket peer name; None for what is not an IP peer (Unix sockets)."""
    if isinstance(peername, (tuple, list)) and peername and isinstance(peername[0], str) and peername[0]:
        return peername[0]
    return None


class GuardedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a header deadline and a per-address half-open cap.

    The base class itself has both guards off; use :meth:`configured` for a class
    carrying settings. Everything added per connection lives in ``__slots__``: the
    base class keeps 28 attributes in its instance dict, and three more would push
    it past CPython's 30-key limit for key-sharing dicts, about 1.3 KB more per
    connection (measured on 3.11), against 32 bytes for four slots.
    """

    __slots__ = ("_guard_timer", "_guard_ip", "_guard_state", "_guard_counted")

    header_timeout: ClassVar[float] = 0.0  # seconds to complete a request's headers; 0: no deadline
    max_half_open_per_ip: ClassVar[int] = 0  # half-open connections per peer address; 0: no cap
    # Half-open connections per peer address, shared by all connections of one class.
    # Only touched from the event loop's thread: one loop per process, as uvicorn runs
    # (each worker process has its own). Two servers on two loops in one process must
    # each use their own configured() class.
    _half_open: ClassVar[dict[str, int]] = {}
    # New connections per peer address (``conn_rate``): a flood of reconnects is refused
    # here, before a byte of it is parsed or logged, rather than with a 429 per handshake.
    _connects: ClassVar[Optional[KeyedBuckets]] = None

    _guard_timer: Optional[asyncio.TimerHandle]
    _guard_ip: Optional[str]
    _guard_state: int
    _guard_counted: bool

    @classmethod
    def configured(cls, header_timeout: float, max_half_open_per_ip: int,
                   conn_rate: float = 0.0) -> type[GuardedHttpProtocol]:
        """A subclass with these settings and its own half-open counter, for
        ``uvicorn.Config(http=...)`` (uvicorn instantiates the class itself, so the
        settings cannot be constructor arguments).

        ``header_timeout``: seconds (0: off). ``max_half_open_per_ip``: 0: off.
        The class is made at run time, so it cannot be pickled: fine for a server run
        in-process (``chat_core.serve``), not for uvicorn's ``workers``/``reload`` modes.
        """
        timeout = float(header_timeout)
        if not math.isfinite(timeout) or timeout < 0:
            raise ValueError(f"header_timeout must be a finite number of seconds >= 0, not {header_timeout!r}")
        if isinstance(max_half_open_per_ip, bool) or int(max_half_open_per_ip) != max_half_open_per_ip \
                or max_half_open_per_ip < 0:
            raise ValueError(f"max_half_open_per_ip must be an integer >= 0, not {max_half_open_per_ip!r}")
        namespace: dict[str, Any] = {
            "__slots__": (),  # the base's slots and dict are all an instance needs
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": f"{cls.__name__} with header_timeout={timeout:g}s, "
                       f"max_half_open_per_ip={int(max_half_open_per_ip)}.",
            "header_timeout": timeout,
            "max_half_open_per_ip": int(max_half_open_per_ip),
            "_half_open": {},
            "_connects": KeyedBuckets(conn_rate, 10 * conn_rate) if conn_rate > 0 else None,
        }
        return cast("type[GuardedHttpProtocol]", type(cls.__name__, (cls,), namespace))

    @classmethod
    def half_open(cls) -> dict[str, int]:
        """A copy of the half-open counts per address (for tests and monitoring)."""
        return dict(cls._half_open)

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        super().__init__(config=config, server_state=server_state, app_state=app_state, _loop=_loop)
        self._guard_timer = None
        self._guard_ip = None
        self._guard_state = _IDLE
        self._guard_counted = False

    # asyncio.Protocol interface

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse the connection if its address is at the cap, else count it and start the deadline."""
        ip = _peer_ip(transport.get_extra_info("peername"))
        self._guard_ip = ip
        limit = self.max_half_open_per_ip
        if limit > 0 and ip is not None and self._half_open.get(ip, 0) >= limit:
            # Cheap: no response, not registered with uvicorn (its connection count,
            # shutdown and limit_concurrency never see it), no timer.
            self._guard_state = _REFUSED
            self.transport = transport
            transport.close()
            log.debug("%s: refused, %d connections of this address still sending headers", ip, limit)
            return
        connects = self._connects
        if connects is not None and ip is not None and not connects.take(ip):
            self._guard_state = _REFUSED
            self.transport = transport
            transport.close()
            log.debug("%s: refused, more new connections than conn_rate", ip)
            return
        super().connection_made(transport)
        self._guard_begin(_WAITING)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._guard_state == _REFUSED:
            return  # uvicorn's connection_made never ran: nothing of its to undo, nothing counted
        self._guard_release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Also arm the deadline when bytes arrive on an idle kept-alive connection
        without starting a request (bare CRLFs): they cancel uvicorn's keep-alive
        timer, and no other timer would be armed until a request begins."""
        super().data_received(data)
        if self._guard_state != _IDLE or self._guard_timer is not None or self.timeout_keep_alive_task is not None:
            return
        cycle = self.cycle
        transport = self.transport
        if (cycle is not None and cycle.response_complete and not self.pipeline
                and not transport.is_closing() and transport.get_protocol() is self):  # not upgraded to WebSocket
            self._guard_begin(_WAITING)

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        """A request begins: on a kept-alive connection, it is half-open again and
        gets a fresh deadline; the first request keeps the one from connection_made."""
        super().on_message_begin()
        if self._guard_state != _STARTED:
            self._guard_begin(_STARTED)

    def on_headers_complete(self) -> None:
        """Headers complete: release the count and the deadline, publish the peer."""
        self._guard_release()
        ip = self._guard_ip
        scope = self.scope
        if ip is not None and scope is not None:
            # Before super(): it may start the app's task, which with an eager task
            # factory would run at once and read the scope.
            extensions: dict[str, Any] = scope.setdefault("extensions", {})
            extensions[PEER_EXTENSION] = ip
        super().on_headers_complete()
        if ip is not None and self.scope is not scope:  # a later uvicorn building the scope here
            later: dict[str, Any] = self.scope.setdefault("extensions", {})
            later.setdefault(PEER_EXTENSION, ip)

    # The guard

    def _guard_begin(self, state: int) -> None:
        """Enter a header-waiting state: counted as half-open, deadline armed (if not yet)."""
        self._guard_state = state
        ip = self._guard_ip
        if not self._guard_counted and ip is not None and self.max_half_open_per_ip > 0:
            # Kept-alive connections are counted without refusal: closing one whose
            # request began would break a client; the deadline still bounds it.
            counts = self._half_open
            counts[ip] = counts.get(ip, 0) + 1
            self._guard_counted = True
        if self._guard_timer is None and self.header_timeout > 0:
            self._guard_timer = self.loop.call_later(self.header_timeout, self._guard_expired)

    def _guard_release(self) -> None:
        """Leave the header-waiting state: cancel the deadline, uncount. Idempotent."""
        timer = self._guard_timer
        if timer is not None:
            self._guard_timer = None
            timer.cancel()
        if self._guard_counted:
            self._guard_counted = False
            ip = cast(str, self._guard_ip)
            counts = self._half_open
            left = counts.get(ip, 0) - 1
            if left > 0:
                counts[ip] = left
            else:
                counts.pop(ip, None)
        self._guard_state = _IDLE

    def _guard_expired(self) -> None:
        """The deadline fired: close, with a 408 if a request began and no response is under way."""
        self._guard_timer = None
        started = self._guard_state == _STARTED
        self._guard_release()
        transport = self.transport
        if transport is None or transport.is_closing() or transport.get_protocol() is not self:
            return
        cycle = self.cycle
        if started and (cycle is None or cycle.response_complete):
            head = [_TIMEOUT_STATUS]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head.append(_TIMEOUT_TAIL)
            transport.write(b"".join(head))
        log.debug("%s: request headers not complete within %gs, closing", self._guard_ip, self.header_timeout)
        transport.close()



def __getattr__(name: str) -> Any:
    """``ChatHttpProtocol``: the guarded protocol with the limits from the ``CHAT_*``
    variables, by name, for uvicorn's command line
    (``uvicorn gradio_app:app --http chat_core.http_guard:ChatHttpProtocol``). Made on
    first use, not at import, so that importing this module reads no environment."""
    if name != "ChatHttpProtocol":
        raise AttributeError(name)
    from .settings import SettingError, Settings

    try:
        settings = Settings.from_env()
    except SettingError as exc:
        raise SystemExit(f"error: {exc}") from None
    cls = GuardedHttpProtocol.configured(settings.header_timeout, settings.max_half_open_per_ip, settings.conn_rate)
    globals()[name] = cls
    return cls
