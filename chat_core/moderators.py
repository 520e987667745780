"""Who is a moderator: a login listed in ``--moderators`` (with ``--auth``), or whoever
presents the admin token (``--admin-token``). With neither set, nobody is, and the
admin API and the Moderation tab say they are off.

The token is compared in constant time (the SHA-256 of what is presented against the
SHA-256 of the token, so not even its length shows through timing) and is never
logged, shown or sent back; Settings leaves it out of its repr."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Optional

from .settings import Settings

ADMIN = "admin"  # the actor the audit log names for the admin token
GUESSES = 5  # wrong tokens per client address per GUESS_WINDOW; beyond, every token from it is refused unread
GUESS_WINDOW = 60.0  # seconds
ADDRESSES_KEPT = 10_000  # addresses with wrong guesses remembered (the oldest go first)


class Moderators:
    def __init__(self, settings: Settings) -> None:
        token = settings.admin_token
        self._digest: Optional[bytes] = hashlib.sha256(token.encode()).digest() if token else None
        self.names = settings.moderator_names()
        self.guesses: dict[str, tuple[float, int]] = {}  # address -> (window start, wrong tokens in it)

    @property
    def enabled(self) -> bool:
        return self._digest is not None or bool(self.names)

    @property
    def token_enabled(self) -> bool:
        return self._digest is not None

    def token_ok(self, presented: str) -> bool:
        if self._digest is None or not presented:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._digest)

    def blocked(self, address: str) -> bool:
        """Too many wrong tokens from ``address`` lately: refuse its next ones without reading
        them, the right one too (else the limit would not stop a guesser who got lucky)."""
        start, wrong = self.guesses.get(address, (0.0, 0))
        return wrong >= GUESSES and time.monotonic() - start < GUESS_WINDOW

    def wrong(self, address: str) -> None:
        """One more wrong token from ``address``."""
        now = time.monotonic()
        start, wrong = self.guesses.pop(address, (now, 0))
        if now - start >= GUESS_WINDOW:
            start, wrong = now, 0
        self.guesses[address] = (start, wrong + 1)
        while len(self.guesses) > ADDRESSES_KEPT:
            del self.guesses[next(iter(self.guesses))]

    def is_moderator(self, login: Optional[str]) -> bool:
        return login is not None and login in self.names


OFF = "Moderation is off: start the server with --admin-token (CHAT_ADMIN_TOKEN) or --moderators."
