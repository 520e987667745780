"""Who holds which name: resume tokens and name reservations.

Without logins a name proves only this: the client holds the token the server
gave out when the name was last free. A token is random (32 bytes), issued once
per claim and kept only as its SHA-256 (so a copy of the database holds no usable
token). A name stays *reserved* for its token while a connection holds it and for
``reserve`` seconds after its holder was last seen; meanwhile a join without the
token is ``name_taken``. After that, or ``ttl`` seconds after the token was
issued, the claim lapses: the next person to take the name gets a new token, and
the old one no longer matches anything, so nobody can evict the new holder with it.

With logins the login is the proof: tokens are then an HMAC of the login name
under the server secret (only that user can have that name, so a fixed token
gives nothing away) and nothing is reserved or stored.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from .refusal import Refusal
from .store import Claim, Store

PRUNE_EVERY = 60.0  # seconds between sweeps of lapsed claims


def name_taken() -> Refusal:
    return Refusal("name_taken", "That name is already in use in this room; choose another.")


def bad_token() -> Refusal:
    return Refusal("bad_token", "That resume token is not valid for this name.")


def name_reserved() -> Refusal:
    return Refusal("name_taken", "That name was used here recently and is kept for the person who had it; "
                   "choose another.")


class Proof(enum.Enum):
    """What a join presents for its name."""

    NONE = "none"  # no token, or one that matches no claim (but the name is free)
    TOKEN = "token"  # the token of the name's current claim
    WRONG = "wrong"  # a token that does not match a claim that is still in force


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def author_of(token: str) -> str:
    """Who wrote a message, as the store keeps it: a digest of the token the writer held
    the name with, so a later holder of the same name (a new token) is someone else."""
    return _digest(token)[:12].hex()


class Claims:
    """The claims registry: in memory, written through ``store`` in the background
    (see :meth:`flush`). One per process."""

    def __init__(self, store: Store, secret: bytes, ttl: float, reserve: float, logins: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the token secret must be at least 16 bytes")
        self._store = store
        self._secret = secret
        self.ttl = ttl
        self.reserve = reserve
        self.logins = logins
        self._clock = clock
        self._claims: dict[str, Claim] = {}
        self._dirty: dict[str, Claim] = {}
        self._dropped: set[str] = set()
        self._pruned = 0.0

    async def open(self) -> None:
        now = self._clock()
        for claim in await self._store.load_claims():
            if not self._lapsed(claim, now, held=False):
                self._claims[claim.key] = claim

    async def refresh(self, key: str) -> None:
        """Before deciding on ``key``: take its claim from a store other processes write
        to as well (Redis), unless this process has a newer one to write."""
        if not self._store.shared or self.logins or key in self._dirty:
            return
        claim = await self._store.load_claim(key)
        if claim is None:
            self._claims.pop(key, None)
        elif not self._lapsed(claim, self._clock(), held=True):
            self._claims[key] = claim

    # --- deciding ----------------------------------------------------------

    def proof(self, key: str, token: Optional[str], held: bool) -> Proof:
        """How ``token`` stands for the name ``key`` (``held``: a connection holds it now)."""
        if self.logins:
            return Proof.TOKEN if token is not None and hmac.compare_digest(token, self._login_token(key)) else (
                Proof.NONE if token is None else Proof.WRONG)
        claim = self._claims.get(key)
        if claim is not None and self._lapsed(claim, self._clock(), held):
            claim = None
        if token is None:
            return Proof.NONE
        if claim is not None and hmac.compare_digest(_digest(token), claim.token_hash):
            return Proof.TOKEN
        return Proof.WRONG if claim is not None else Proof.NONE

    def admit(self, key: str, name: str, token: Optional[str], held_elsewhere: bool, trusted: bool) -> str:
        """Let ``name`` be taken by a joiner presenting ``token`` (nobody holds it in the
        room being joined), or raise :class:`Refusal`. Returns the token to hand back:
        the one presented, or a new one for a new claim. ``trusted``: the joiner already
        holds this name on this connection (switching rooms) or proved it by login."""
        if self.logins:
            return self._login_token(key)
        if self.check(key, token, held_elsewhere, trusted) is Proof.TOKEN:
            assert token is not None
            self.touch(key)
            return token
        return self._claim(key, name)

    def check(self, key: str, token: Optional[str], held_elsewhere: bool, trusted: bool) -> Proof:
        """Raise the :class:`Refusal` that :meth:`admit` would, changing nothing (a join
        checks before it takes the name where others see it); else the proof."""
        if self.logins:
            return Proof.TOKEN
        proof = self.proof(key, token, held_elsewhere)
        if proof is Proof.TOKEN:
            return proof
        claim = self._claims.get(key)
        in_force = claim is not None and not self._lapsed(claim, self._clock(), held_elsewhere)
        if in_force and not trusted:
            raise bad_token() if proof is Proof.WRONG else name_reserved()
        return proof

    def revoke(self, key: str) -> bool:
        """Forget the claim on ``key``: its token stops working at once. True if there was one."""
        claim = self._claims.pop(key, None)
        self._dirty.pop(key, None)
        if claim is not None:
            self._dropped.add(key)
        return claim is not None

    def touch(self, key: str) -> None:
        """Its holder was seen now (joined, or left): the reservation runs from here."""
        claim = self._claims.get(key)
        if claim is not None:
            claim.last_seen = self._clock()
            self._dirty[key] = claim

    def _claim(self, key: str, name: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self._clock()
        claim = Claim(key, name, _digest(token), now, now)
        self._claims[key] = claim
        self._dirty[key] = claim
        self._dropped.discard(key)
        return token

    def _lapsed(self, claim: Claim, now: float, held: bool) -> bool:
        if self.ttl and now - claim.created > self.ttl:
            return True
        return not held and now - claim.last_seen > self.reserve

    def _login_token(self, key: str) -> str:
        return _b64(hmac.new(self._secret, b"chat-login-v2\0" + key.encode(), hashlib.sha256).digest())

    # --- keeping -----------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return bool(self._dirty or self._dropped)

    def __len__(self) -> int:
        return len(self._claims)

    def __contains__(self, key: object) -> bool:
        return key in self._claims

    async def flush(self, held: Callable[[str], bool]) -> None:
        """Write what changed; now and then forget lapsed claims nobody holds. On a
        store error the changes stay queued for the next flush."""
        now = self._clock()
        if now - self._pruned > PRUNE_EVERY:
            self._pruned = now
            for key, claim in list(self._claims.items()):
                if not held(key) and self._lapsed(claim, now, held=False):
                    self.revoke(key)
        if not self.dirty:
            return
        dirty, dropped = self._dirty, self._dropped
        self._dirty, self._dropped = {}, set()
        try:
            await self._store.save_claims(list(dirty.values()), sorted(dropped))
        except BaseException:
            for key, claim in dirty.items():
                self._dirty.setdefault(key, claim)
            self._dropped |= dropped - set(self._claims)
            raise


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


def ticket(secret: bytes, session: str) -> str:
    """The value a page served to a logged-in session must present when it opens
    ``/ws``: proof that the socket comes from a page this server gave that session
    (another site's page may make the browser send the cookie, but cannot read this)."""
    return _b64(hmac.new(secret, b"chat-ws-ticket-v1\0" + session.encode("utf-8", "surrogatepass"),
                         hashlib.sha256).digest())
