"""Who is a moderator: a login listed in ``--moderators`` (with ``--auth``), or whoever
presents the admin token (``--admin-token``). With neither set, nobody is, and the
admin API and the Moderation tab say they are off.

The token is compared in constant time (the SHA-256 of what is presented against the
SHA-256 of the token, so not even its length shows through timing) and is never
logged, shown or sent back; Settings leaves it out of its repr."""

from __future__ import annotations

import hashlib
import hmac
from typing import Optional

from .limits import Guesses
from .settings import Settings

ADMIN = "admin"  # the actor the audit log names for the admin token


class Moderators:
    def __init__(self, settings: Settings) -> None:
        token = settings.admin_token
        self._digest: Optional[bytes] = hashlib.sha256(token.encode()).digest() if token else None
        self.names = settings.moderator_names()
        self.guesses = Guesses()  # 5 wrong tokens a minute per address

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
        """Too many wrong tokens from ``address`` lately (:class:`chat_core.limits.Guesses`)."""
        return self.guesses.blocked(address)

    def wrong(self, address: str) -> None:
        self.guesses.wrong(address)

    def is_moderator(self, login: Optional[str]) -> bool:
        return login is not None and login in self.names


OFF = "Moderation is off: start the server with --admin-token (CHAT_ADMIN_TOKEN) or --moderators."
