"""Who may open the socket: origin checks, logins and per-address caps, decided
from the handshake before the connection is accepted."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hmac
from typing import Callable, Optional
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from .limits import client_address
from .settings import Settings

# Given a request, the logged-in user name, or None when not logged in.
Authenticator = Callable[[HTTPConnection], Optional[str]]


def _origin_parts(origin: str) -> tuple[str, str]:
    parts = urlsplit(origin)
    return parts.scheme.lower(), (parts.netloc or "").lower()


def origin_allowed(origin: Optional[str], host: Optional[str], settings: Settings,
                   forwarded_host: Optional[str] = None) -> bool:
    """Same origin (the Origin's host:port equals Host, or X-Forwarded-Host behind a
    trusted proxy), or listed in ``allowed_origins``; no Origin only if not required."""
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
    for pattern in allowed_list(settings):
        p_scheme, p_netloc = _origin_parts(pattern)
        if p_scheme == scheme and fnmatch.fnmatchcase(netloc, p_netloc) and _labels_match(netloc, p_netloc):
            return True
    return False


def _labels_match(netloc: str, pattern: str) -> bool:
    # '*' stands for exactly one DNS label: *.hf.space matches a.hf.space, not a.b.hf.space
    return netloc.count(".") == pattern.count(".")


def allowed_list(settings: Settings) -> list[str]:
    return [o.strip().rstrip("/") for o in settings.allowed_origins.split(",") if o.strip()]


def address_of(conn: HTTPConnection, settings: Settings) -> str:
    peer = conn.client.host if conn.client else None
    return client_address(peer, conn.headers.get("x-forwarded-for"), settings.trust_proxy)


def basic_auth(logins: dict[str, str]) -> Authenticator:
    """An authenticator for HTTP Basic credentials (the FastAPI-only server's ``--auth``)."""

    def authenticate(conn: HTTPConnection) -> Optional[str]:
        scheme, _, encoded = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected = logins.get(user)
        if expected is not None and hmac.compare_digest(expected.encode(), password.encode()):
            return user
        return None

    return authenticate
