"""Who may open the socket: origin checks, logins and per-address caps, decided
from the handshake before the connection is accepted."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hmac
import ipaddress
from collections.abc import Callable, Iterable
from typing import NamedTuple, Optional
from urllib.parse import parse_qs, urlsplit

from starlette.requests import HTTPConnection
from starlette.types import Scope

from .identity import ticket
from .limits import client_address
from .settings import Settings, split_list

PEER = "chat_core.peer"  # ASGI scope extension: the real TCP peer (see chat_core.http_guard)


class Login(NamedTuple):
    """A logged-in user, and what identifies the login session (a cookie, credentials):
    the per-session ticket a page must present on ``/ws`` is derived from it."""

    user: str
    session: str


# Given a request, the login, or None when not logged in.
Authenticator = Callable[[HTTPConnection], Optional[Login]]


def _origin_parts(origin: str) -> tuple[str, str]:
    parts = urlsplit(origin)
    return parts.scheme.lower(), (parts.netloc or "").lower()


def origin_allowed(origin: Optional[str], host: Optional[str], settings: Settings,
                   forwarded_host: Optional[str] = None, extra: Iterable[str] = ()) -> bool:
    """Same origin (the Origin's host:port equals Host, or X-Forwarded-Host behind a
    trusted proxy), or listed in ``allowed_origins`` (or ``extra``: this app's own share
    link, once made); no Origin only if not required."""
    if not origin:
        return not settings.require_origin
    if origin == "null":
        return False
    scheme, netloc = _origin_parts(origin)
    hosts = {(host or "").lower()}
    if settings.trust_proxy and forwarded_host:
        hosts.add(forwarded_host.split(",")[0].strip().lower())
    if netloc and netloc in hosts:
        return True
    for pattern in [*allowed_list(settings), *extra]:
        p_scheme, p_netloc = _origin_parts(pattern)
        if p_scheme == scheme and fnmatch.fnmatchcase(netloc, p_netloc) and _labels_match(netloc, p_netloc):
            return True
    return False


def _labels_match(netloc: str, pattern: str) -> bool:
    # '*' stands for exactly one DNS label: *.hf.space matches a.hf.space, not a.b.hf.space
    return netloc.count(".") == pattern.count(".")


def allowed_list(settings: Settings) -> list[str]:
    return split_list(settings.allowed_origins)


LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: Optional[str]) -> bool:
    """An IP address on the loopback range (127.0.0.0/8, ::1)."""
    try:
        return host is not None and ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name part of a Host header, lower case, without the port."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(scope: Scope, settings: Settings, extra: Iterable[str] = ()) -> bool:
    """The DNS-rebinding guard. A request that reached this server on a loopback
    address must name a loopback host (localhost, 127.x.x.x, [::1]) or one listed in
    ``allowed_hosts`` (or ``extra``: this app's share-link host): a page on
    http://evil.example:7860 whose name resolves to 127.0.0.1 is not "same origin"."""
    server = scope.get("server")
    if not server or not is_loopback(str(server[0])):
        return True
    listed = [*split_list(settings.allowed_hosts), *extra]
    if "*" in listed:
        return True
    raw = HTTPConnection(scope).headers.get("host")
    if raw is None:
        return True  # HTTP/1.0 with no Host: names no other site either
    name = host_name(raw)
    if name in LOOPBACK_NAMES or name.endswith(".localhost") or is_loopback(name):
        return True
    return any(fnmatch.fnmatchcase(name, p.lower()) and _labels_match(name, p) for p in listed)


def address_of(conn: HTTPConnection, settings: Settings, share_host: Optional[str] = None) -> str:
    """The client address limits count against: the real TCP peer (as
    :mod:`chat_core.http_guard` or :mod:`chat_core.transport` saw it, whatever uvicorn's
    proxy-header handling rewrote), or an ``X-Forwarded-For`` entry only as ``trust_proxy``
    says. Through this app's share tunnel, every visitor arrives from the local tunnel
    client; there the entry the share server appended (the rightmost) is taken."""
    peer = conn.scope.get("extensions", {}).get(PEER) or (conn.client.host if conn.client else None)
    forwarded = conn.headers.get("x-forwarded-for")
    if not settings.trust_proxy and share_host and is_loopback(peer) \
            and host_name(conn.headers.get("host", "")) == share_host:
        return client_address(peer, forwarded, "1")
    return client_address(peer, forwarded, settings.trust_proxy)


def basic_auth(logins: dict[str, str]) -> Authenticator:
    """An authenticator for HTTP Basic credentials (the FastAPI-only server's ``--auth``)."""

    def authenticate(conn: HTTPConnection) -> Optional[Login]:
        scheme, _, encoded = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected = logins.get(user)
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return Login(user, "basic:" + encoded)
        return None

    return authenticate


class Gate:
    """Who may open ``/ws`` and which hosts are served, decided from the handshake
    before a connection is accepted; it also knows this app's own share link."""

    def __init__(self, settings: Settings, authenticate: Optional[Authenticator]) -> None:
        self.settings = settings
        self.authenticate = authenticate
        self.secret = b""  # set when the server starts (identity.load_secret)
        self.share_origins: list[str] = []  # this app's own share link, once Gradio has made it
        self.share_hosts: list[str] = []

    def allow_share_link(self, url: str) -> None:
        """Pages on this app's share link (``https://<id>.gradio.live``) may open ``/ws``
        and reach the app through the tunnel: exactly that origin, never a wildcard over
        everybody else's share links."""
        parts = urlsplit(url)
        if parts.scheme and parts.hostname:
            self.share_origins = [f"{parts.scheme}://{parts.netloc}".lower()]
            self.share_hosts = [parts.hostname.lower()]

    @property
    def share_host(self) -> Optional[str]:
        return self.share_hosts[0] if self.share_hosts else None

    def http_allowed(self, scope: Scope) -> bool:
        """The DNS-rebinding guard for plain HTTP requests (see :func:`host_allowed`)."""
        return host_allowed(scope, self.settings, self.share_hosts)

    def admit(self, handshake: HTTPConnection) -> tuple[Optional[str], Optional[str]]:
        """(login name, None) to accept, or (None, reason) to refuse the handshake."""
        s, h = self.settings, handshake.headers
        if not host_allowed(handshake.scope, s, self.share_hosts):
            return None, f"host {h.get('host')!r} not served (see --allowed-hosts)"
        origin = h.get("origin")
        if not origin_allowed(origin, h.get("host"), s, h.get("x-forwarded-host"), self.share_origins):
            return None, f"origin {origin!r} not allowed"
        if self.authenticate is None:
            return None, None
        login = self.authenticate(handshake)
        if login is None:
            return None, "not logged in"
        # A browser always sends Origin; a page that did must also show the ticket of the
        # session it was served to, which another site's page cannot read.
        if origin is not None and not self._ticket_ok(handshake, login):
            return None, "no valid ticket for this login session"
        return login.user, None

    def ticket_for(self, login: Login) -> str:
        return ticket(self.secret, login.session)

    def _ticket_ok(self, handshake: HTTPConnection, login: Login) -> bool:
        given = parse_qs(handshake.scope.get("query_string", b"").decode("latin-1")).get("ticket", [""])[0]
        return bool(given) and hmac.compare_digest(given, self.ticket_for(login))
