"""The edge, per frame: what one client's text frame does, after the limits.

Every frame counts against its connection's frame rate; a message also against
the connection's, the address's and the name's message rates; a join against the
joins of both, and, when it creates a room or takes a new name, against the
address's rooms and names. A refusal for going too fast is a ``rate_limited`` error
and counts towards the flood close (1008), whatever the frame's type. What is
accepted goes to the hub; what is refused goes back as an ``error`` frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

from . import protocol
from .bot_names import BotNames
from .hub import Hub, Member
from .limits import AddressCounter, Flood, KeyedBuckets, TokenBucket
from .protocol import CloseCode, Delete, Edit, Join, Msg, Ping, ProtocolError, React, Typing
from .refusal import Refusal
from .rooms import Role
from .rules import TYPING_EVERY
from .settings import Settings
from .store import Change

log = logging.getLogger("chat_core.session")

SLOW_KEPT = 100_000  # (room, name) pairs remembered for slow mode before the stale ones are dropped


class Session:
    """Per-connection state at the edge: the hub member, its limits, its login, its address."""

    __slots__ = ("member", "messages", "joins", "frames", "flood", "login", "address", "typed")

    def __init__(self, member: Member, s: Settings, login: Optional[str], address: str) -> None:
        self.member = member
        self.messages = TokenBucket(s.rate, s.burst)
        self.joins = TokenBucket(s.join_rate, s.join_burst)
        self.frames = TokenBucket(s.frame_rate, 3 * s.frame_rate)
        self.flood = Flood(s.rate, s.flood_limit)
        self.login = login
        self.address = address
        member.address = address
        member.role = self.person_role(s)
        self.typed = -TYPING_EVERY  # loop time of the last typing relayed

    def person_role(self, s: Settings) -> Role:
        """The role without a bot key: a moderator's login, or a person."""
        return Role.MODERATOR if self.login is not None and self.login in s.moderator_names() else Role.PERSON


class AddressLimits:
    """The rates kept per client address (and messages per name) across all of its
    connections, so that reconnecting resets nothing; here, in this process (the
    Redis engine keeps them for all processes: :class:`chat_core.redis_limits.SharedLimits`)."""

    def __init__(self, s: Settings) -> None:
        self.messages = KeyedBuckets(s.ip_rate, 2 * s.ip_rate)
        self.names = KeyedBuckets(s.rate, s.burst)  # a name's messages over all connections using it
        self.joins = KeyedBuckets(s.ip_join_rate, 5 * s.ip_join_rate)
        self.connects = KeyedBuckets(s.conn_rate, 10 * s.conn_rate)
        self.rooms = KeyedBuckets(s.room_rate, 5)
        self.new_names = KeyedBuckets(s.name_rate, 10)
        self.open = AddressCounter(s.max_conn_per_ip)
        self.last_sent: dict[tuple[str, str], float] = {}  # (room, name key) -> when, in slow rooms

    async def message(self, address: str, name_key: str) -> bool:
        """One message from ``address`` under the name ``name_key``."""
        return self.messages.take(address) and self.names.take(name_key)

    async def join(self, address: str) -> bool:
        return self.joins.take(address)

    async def new_room(self, address: str) -> bool:
        return self.rooms.take(address)

    async def new_name(self, address: str) -> bool:
        return self.new_names.take(address)

    async def slow(self, room: str, key: str, seconds: float) -> bool:
        """The room's slow mode: True (and the clock started again) if ``key`` (a login, or
        a client address) sent nothing in ``room`` for ``seconds``."""
        now = time.monotonic()
        last = self.last_sent.pop((room, key), None)
        if last is not None and now - last < seconds:
            self.last_sent[(room, key)] = last
            return False
        self.last_sent[(room, key)] = now  # (popped and put back: the dict stays oldest first)
        while len(self.last_sent) > SLOW_KEPT:  # bounded: the oldest go first
            del self.last_sent[next(iter(self.last_sent))]
        return True

    async def connect(self, address: str) -> bool:
        return self.connects.take(address)

    async def acquire(self, address: str, conn: str) -> bool:
        """One more open connection (``conn``) from ``address``, if under the cap."""
        return self.open.acquire(address)

    def release(self, address: str, conn: str) -> None:
        self.open.release(address)


class FrameHandler:
    def __init__(self, hub: Hub, settings: Settings, limits: AddressLimits) -> None:
        self.hub = hub
        self.settings = settings
        self.limits = limits
        self.bots = BotNames(settings)
        self.bot_sends = KeyedBuckets(settings.bot_rate, 5 * settings.bot_rate)  # per bot name

    async def _may_send(self, session: Session) -> bool:
        """A message or change within the sender's rates: a bot's own, or a person's (the
        connection's, the address's and the name's)."""
        member = session.member
        if member.role is Role.BOT:
            return self.bot_sends.take(member.key or "")
        return session.messages.take() and await self.limits.message(session.address, member.key or "")

    async def handle(self, session: Session, text: str) -> None:
        """One text frame from a client: parse, validate, limit, hand over; errors go back as frames.

        Every frame counts against the connection's frame rate, and every refusal
        for going too fast counts towards the flood close, whatever the frame's type."""
        hub = self.hub
        member = session.member
        cid = None
        try:
            if not session.frames.take():
                self._too_fast(session, "Too many frames; slow down.")
                return
            frame = protocol.parse(text, self.settings.max_text)
            if isinstance(frame, Msg):
                limits, cid = self.limits, frame.cid
                slow = hub.check_post(member)
                if not await self._may_send(session):
                    self._too_fast(session, "Slow down: that message was not sent.", cid)
                    return
                if slow and not await limits.slow(member.room.name if member.room else "", slow_key(session), slow):
                    raise Refusal("slow_mode", f"Slow mode is on in this room: one message every {slow:g} s.")
                hub.post(member, frame.text, cid)
            elif isinstance(frame, (Edit, Delete, React)):  # changes count as messages against every rate
                hub.check_post(member)
                if not await self._may_send(session):
                    self._too_fast(session, "Slow down: that change was not made.")
                    return
                self._change(member, frame)
            elif isinstance(frame, Join):
                if session.login is not None:
                    frame = Join(session.login, frame.room, frame.since, frame.token, bot_key=frame.bot_key)
                await self._join(session, frame)
            elif isinstance(frame, Typing):
                self._typing(session)
            elif isinstance(frame, Ping):
                member.send(protocol.pong())
        except ProtocolError as exc:
            member.send(protocol.error(exc.code, exc.message, exc.cid))
        except Refusal as exc:
            member.send(protocol.error(exc.code, exc.message, cid, exc.until))
        except hub.writer.sequencer.expected as exc:  # the store is away (Redis down): reading history failed
            log.info("join refused, history unreadable: %s: %s", type(exc).__name__, exc)
            member.send(protocol.error("store_unavailable", "The chat history cannot be read right now; try again."))

    async def _join(self, session: Session, frame: Join) -> None:
        hub, limits, address = self.hub, self.limits, session.address
        if not (session.joins.take() and await limits.join(address)):
            self._too_fast(session, "Too many joins; wait a moment and try again.")
            return
        if not hub.is_listed(frame.room) and not await limits.new_room(address):
            self._too_fast(session, "Too many new rooms from this address; join one from the list.")
            return
        member = session.member
        if frame.key != member.key and frame.key not in hub.claims and not await limits.new_name(address):
            self._too_fast(session, "Too many new names from this address; wait a moment.")
            return
        role = self.bots.role(frame.key, frame.bot_key, address)  # (a bot's key proves its name)
        await hub.join(member, frame, trusted=session.login is not None or role is Role.BOT)
        member.role = role or session.person_role(self.settings)

    def _change(self, member: Member, frame: Edit | Delete | React) -> None:
        if isinstance(frame, Edit):
            self.hub.change(member, Change.EDIT, frame.id, text=frame.text)
        elif isinstance(frame, Delete):
            self.hub.change(member, Change.DELETE, frame.id)
        else:
            self.hub.change(member, Change.REACT, frame.id, emoji=frame.emoji)

    def _typing(self, session: Session) -> None:
        """Relay at most one typing per connection every TYPING_EVERY seconds; the rest
        are dropped without a word (a hint, not a message)."""
        member = session.member
        if member.room is None or member.name is None:
            raise Refusal("not_joined", "Join a room (send a \"join\" frame) before typing.")
        now = asyncio.get_running_loop().time()
        if now - session.typed >= TYPING_EVERY:
            session.typed = now
            self.hub.typing(member)

    def _too_fast(self, session: Session, message: str, cid: Optional[str] = None) -> None:
        """Refuse one frame as ``rate_limited``; persistent flooding closes the connection (1008),
        but not a bot's: its answers come from what others send, so others could get it closed."""
        if session.member.role is not Role.BOT and session.flood.strike():
            session.member.outbox.close(CloseCode.POLICY, "flooding")
        else:
            session.member.send(protocol.error("rate_limited", message, cid))


def slow_key(session: Session) -> str:
    """Who slow mode counts: the login, else the client address (a new name would be a new clock)."""
    return "login:" + session.login if session.login is not None else "address:" + session.address
