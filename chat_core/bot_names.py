"""Names kept for bots (``--bot-keys name=key``): a join with the name's key is the bot;
any other join under that name, or a look-alike of it, is refused.

A bot key is a password for one name, so it is handled like the admin token: compared in
constant time (SHA-256 of both sides, ``hmac.compare_digest``), never logged, and wrong keys
are counted per client address (:class:`chat_core.limits.Guesses`: 5 a minute, then none).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Optional

from .limits import Guesses
from .refusal import Refusal
from .rooms import Role
from .settings import Settings


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class BotNames:
    def __init__(self, settings: Settings) -> None:
        self.names = {key: (name, digest(secret)) for key, (name, secret) in settings.bot_key_map().items()}
        self.guesses = Guesses()

    def role(self, key: str, bot_key: Optional[str], address: str) -> Optional[Role]:
        """``Role.BOT`` with the name's own key; None (not a bot) for a name that is no bot's,
        joined without a key; else :class:`Refusal` (``bot_name``, ``bad_bot_key``)."""
        kept = self.names.get(key)
        if bot_key is None:
            if kept is not None:
                raise Refusal("bot_name", f"{kept[0]} is the name of a bot here; choose another.")
            return None
        if self.guesses.blocked(address):  # (rate_limited: the bot itself should try again, not give up)
            raise Refusal("rate_limited", "Too many wrong bot keys from this address; wait a minute.")
        if kept is not None and hmac.compare_digest(digest(bot_key), kept[1]):
            return Role.BOT
        self.guesses.wrong(address)
        raise Refusal("bad_bot_key", "That is not this name's bot key.")
