"""Resume tokens: proof that a reconnecting client is the one that held a name.

A token is ``<name>.<HMAC-SHA256(secret, name)>`` (URL-safe base64), bound to the
name (case-insensitively) and valid across rooms and restarts as long as the
secret stays the same. The secret comes from ``CHAT_SECRET`` or is generated once
and kept in a file beside the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Optional


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokens:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, name: str) -> bytes:
        return hmac.new(self._secret, b"chat-resume-v1\0" + name.casefold().encode(), hashlib.sha256).digest()

    def issue(self, name: str) -> str:
        return _b64(name.encode()) + "." + _b64(self._mac(name))

    def check(self, token: str, name: str) -> bool:
        """True when ``token`` was issued by this server for ``name``."""
        try:
            encoded, mac = token.split(".", 1)
            holder = _unb64(encoded).decode()
            given = _unb64(mac)
        except (ValueError, UnicodeDecodeError):
            return False
        return holder.casefold() == name.casefold() and hmac.compare_digest(given, self._mac(name))


def load_secret(configured: str, path: Optional[str]) -> bytes:
    """``CHAT_SECRET`` if set; else the secret kept in ``path`` beside the database
    (made once); else (history in memory, no path) a fresh one for this process."""
    if configured:
        return configured.encode()
    if path is None:
        return secrets.token_bytes(32)
    file = Path(path).expanduser()
    try:
        return bytes.fromhex(file.read_text().strip())
    except FileNotFoundError:
        pass
    file.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.hex().encode())
    finally:
        os.close(fd)
    return secret
